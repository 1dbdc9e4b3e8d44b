//! Just enough DER to give a certificate several `O` (organization) attributes.
//!
//! Kubernetes reads every `O` of a client certificate as a group, but rcgen 0.14 keeps one value
//! per attribute type in its `DistinguishedName` (rustls/rcgen#81). So for two or more groups we
//! let rcgen build and sign the certificate, swap in a subject we encode ourselves, and sign the
//! new to-be-signed part again with the same issuer key. Nothing else in the certificate changes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rcgen::SigningKey;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
/// `[0] EXPLICIT Version` at the start of a v3 TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// DER contents of the OIDs id-at-commonName (2.5.4.3) and id-at-organizationName (2.5.4.10).
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
const OID_ORGANIZATION_NAME: [u8; 3] = [0x55, 0x04, 0x0a];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// One element: its tag, its whole encoding, and its contents.
struct Element<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// Split the first element off `input`. Only low tag numbers and definite lengths (all DER has).
fn read_element(input: &[u8]) -> Result<(Element<'_>, &[u8]), String> {
    let truncated = || "truncated DER".to_owned();
    let tag = *input.first().ok_or_else(truncated)?;
    if tag & 0x1f == 0x1f {
        return Err("unsupported high tag number".to_owned());
    }
    let first = *input.get(1).ok_or_else(truncated)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return Err("unsupported DER length".to_owned());
        }
        let bytes = input.get(2..2 + count).ok_or_else(truncated)?;
        let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + count)
    };
    let end = header.checked_add(len).ok_or_else(truncated)?;
    let whole = input.get(..end).ok_or_else(truncated)?;
    Ok((
        Element {
            tag,
            whole,
            content: &whole[header..],
        },
        &input[end..],
    ))
}

/// A Name with one RDN for the common name and one per organization, all UTF8String.
pub(crate) fn name(common_name: &str, organizations: &[&str]) -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        let pair = [tlv(TAG_OID, oid), tlv(TAG_UTF8_STRING, value.as_bytes())].concat();
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &pair))
    };
    let mut rdns = attribute(&OID_COMMON_NAME, common_name);
    for organization in organizations {
        rdns.extend(attribute(&OID_ORGANIZATION_NAME, organization));
    }
    tlv(TAG_SEQUENCE, &rdns)
}

/// Why a certificate could not be re-signed.
#[derive(Debug)]
pub(crate) enum ResignError {
    Malformed(String),
    Sign(rcgen::Error),
}

/// Return `cert_der` with its subject replaced by `subject` (a DER Name), signed again by `key`.
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject: &[u8],
    key: &impl SigningKey,
) -> Result<Vec<u8>, ResignError> {
    let malformed = ResignError::Malformed;
    let (certificate, _) = read_element(cert_der).map_err(malformed)?;
    let (tbs, rest) = read_element(certificate.content).map_err(malformed)?;
    let (signature_algorithm, _) = read_element(rest).map_err(malformed)?;
    if certificate.tag != TAG_SEQUENCE || tbs.tag != TAG_SEQUENCE {
        return Err(malformed("certificate is not a SEQUENCE".to_owned()));
    }

    let mut fields = Vec::new();
    let mut input = tbs.content;
    while !input.is_empty() {
        let (field, rest) = read_element(input).map_err(malformed)?;
        fields.push(field);
        input = rest;
    }
    // version?, serialNumber, signature, issuer, validity, subject, ...
    let subject_index = match fields.first() {
        Some(field) if field.tag == TAG_VERSION => 5,
        _ => 4,
    };
    if fields.len() <= subject_index || fields[subject_index].tag != TAG_SEQUENCE {
        return Err(malformed("certificate has no subject".to_owned()));
    }
    let mut new_tbs_content = Vec::with_capacity(tbs.content.len() + subject.len());
    for (index, field) in fields.iter().enumerate() {
        if index == subject_index {
            new_tbs_content.extend_from_slice(subject);
        } else {
            new_tbs_content.extend_from_slice(field.whole);
        }
    }
    let new_tbs = tlv(TAG_SEQUENCE, &new_tbs_content);
    let signature = key.sign(&new_tbs).map_err(ResignError::Sign)?;
    let signature_bits = tlv(TAG_BIT_STRING, &[&[0u8][..], &signature].concat());
    Ok(tlv(
        TAG_SEQUENCE,
        &[
            new_tbs.as_slice(),
            signature_algorithm.whole,
            &signature_bits,
        ]
        .concat(),
    ))
}

/// PEM-encode a DER certificate (64-character lines, `\n` line ends).
pub(crate) fn certificate_pem(der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_roundtrip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = tlv(TAG_SEQUENCE, &content);
            let (element, rest) = read_element(&encoded).unwrap();
            assert_eq!(element.content.len(), len);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let encoded = tlv(TAG_SEQUENCE, &[1, 2, 3, 4]);
        for end in 0..encoded.len() {
            assert!(read_element(&encoded[..end]).is_err());
        }
        assert!(read_element(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }

    #[test]
    fn name_parses_with_x509_parser() {
        use x509_parser::prelude::FromDer;
        let der = name("alice", &["a", "b", "c"]);
        let (_, parsed) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        let orgs: Vec<_> = parsed
            .iter_organization()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["a", "b", "c"]);
    }
}
