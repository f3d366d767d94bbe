//! "Did you mean ...?" for unknown keys: the closest known key by edit
//! distance (optimal string alignment: insertions, deletions, substitutions
//! and swaps of two neighbouring characters each cost 1).
//!
//! Only suggests; never decides whether a key is valid.

/// The candidate closest to `word`, if it is close enough to be a likely
/// typo: at most 1 edit for words up to 4 characters, 2 up to 8, 3 beyond.
/// Case is ignored. Ties go to the earlier candidate.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = match word.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (distance(&word, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance between `a` and `b`, in characters.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back (for swaps), previous, current.
    let mut two_back = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(two_back[j - 2] + 1);
            }
        }
        std::mem::swap(&mut two_back, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("listen_port", "listen_port"), 0);
        assert_eq!(distance("lsiten_port", "listen_port"), 1, "a swap is one edit");
        assert_eq!(distance("listen_prt", "listen_port"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("é", "e"), 1, "characters, not bytes");
    }

    #[test]
    fn suggestions() {
        let keys = ["listen_port", "bootstrap_peers", "address", "mtu", "api"];
        assert_eq!(closest("listen-port", &keys), Some("listen_port"));
        assert_eq!(closest("Listen_Port", &keys), Some("listen_port"));
        assert_eq!(closest("bootstrap_peer", &keys), Some("bootstrap_peers"));
        assert_eq!(closest("adress", &keys), Some("address"));
        assert_eq!(closest("mut", &keys), Some("mtu"));
        assert_eq!(closest("apis", &keys), Some("api"));
        assert_eq!(closest("colour", &keys), None);
        assert_eq!(closest("m", &keys), None);
    }
}
