//! Completion indexes of Indexed Jobs in the `status.completedIndexes` notation: ascending,
//! comma-separated, a run of three or more consecutive indexes written `a-b` ("1,3-5,7"; two
//! consecutive indexes stay "1,2").

use std::collections::BTreeSet;

/// Parses `"1,3-5,7"`; malformed parts are skipped, as upstream's parser does.
pub fn parse(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            continue;
        };
        for i in first.max(0)..=last.min(completions - 1) {
            out.insert(i);
        }
    }
    out
}

pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        parts.push(match last - first {
            0 => first.to_string(),
            1 => format!("{first},{last}"),
            _ => format!("{first}-{last}"),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let set = parse("0,2-4,7", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7]);
        assert_eq!(format(&set), "0,2-4,7");
        assert_eq!(format(&parse("0-1", 10)), "0,1");
        assert_eq!(format(&BTreeSet::new()), "");
        // Indexes beyond completions are dropped.
        assert_eq!(format(&parse("1-9", 4)), "1-3");
        assert_eq!(format(&parse("x,1", 3)), "1");
    }
}
