//! "Did you mean": the one hint every check of a name in an app gives (kinds, fields,
//! pool types, restart types, modules...).

/// " (did you mean X?)" for the candidate nearest to `word`, when it is at most `max`
/// edits away (an insertion, a deletion, a change, or a swap of two neighbours); "" for
/// none or for `word` itself.
pub fn did_you_mean(word: &str, candidates: &[&str], max: usize) -> String {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, _)| *d > 0 && *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

/// The edits a hint allows for most names: three.
pub const NEAR: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_within_reach() {
        assert_eq!(
            did_you_mean("statc", &["inline", "static"], NEAR),
            " (did you mean static?)"
        );
        assert_eq!(
            did_you_mean("tmie", &["time", "io"], 1),
            " (did you mean time?)"
        );
        assert_eq!(did_you_mean("http", &["time", "io"], NEAR), "");
        assert_eq!(did_you_mean("time", &["time"], NEAR), "");
    }
}
