//! The whole benchmark: both paths checked once, then each phase in turn.

use crate::cli::{Args, Phase};
use crate::error::Result;
use crate::paths::Paths;
use crate::phases;
use crate::results::Results;

pub async fn run(args: &Args) -> Result<Results> {
    let paths = Paths::prepare(args)?;
    paths.check().await?;
    let mut results = Results::default();
    for phase in &args.phases {
        match phase {
            Phase::Unary => results.unary = Some(phases::unary::run(args, &paths).await),
            Phase::FirstToken => {
                results.first_token = Some(phases::first_token::run(args, &paths).await);
            }
            Phase::Memory => results.memory = Some(phases::memory::run(args, &paths).await?),
        }
    }
    Ok(results)
}
