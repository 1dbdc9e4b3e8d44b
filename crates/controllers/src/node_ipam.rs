//! (not yet written)

use crate::Context;

pub async fn run(_ctx: Context) {}
