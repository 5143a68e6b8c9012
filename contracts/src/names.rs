//! Comparing Indonesian personal names, as a registry and a self-report write them: the
//! groundwork of bulk verification (issue #15), where the provider's verdict on a name and
//! the cleanser's grouping of probable duplicates must agree, so both sides use this one
//! module.
//!
//! A name is first brought to a canonical form ([`canonical`]):
//! - letters folded to lower case; everything that is not a letter or a digit separates
//!   words (`Siti-Nur'aini` → `siti nur aini`);
//! - academic titles after a comma set aside (`Budi Santoso, S.Kom., M.M.` → `budi santoso`),
//!   and honorifics and titles before the name (`H.`, `Hj.`, `Drs.`, `Dr.`, `Ir.`, `Prof.`,
//!   `K.H.`, …) and common titles after it (`S.H.`, `S.E.`, `S.Kom`, …) dropped;
//! - the old spelling brought to the new (`dj` → `j`, `tj` → `c`, `oe` → `u`, `sj` → `sy`,
//!   `nj` → `ny`, `ch` → `kh`, and in a word with those marks `j` → `y`), and the common variants of a few names to one (`Muhammad`, `Muhamad`,
//!   `Mohammad`, `Mohamad`, `Moh.`, `Muh.`, `Mhd.` → `muhammad`; `Noor` → `nur`).
//!
//! Then [`compare`] gives a [`NameMatch`]: `Match` when the canonical forms are equal,
//! `Close` when their similarity (Jaro–Winkler of the words in order, or sorted when the
//! order differs, from `strsim`) is at least [`CLOSE_AT`], else `Mismatch`.

/// The similarity from which two different canonical names are `Close`.
pub const CLOSE_AT: f64 = 0.90;

/// Honorifics and titles written before a name.
const BEFORE: &[&str] = &[
    "h", "hj", "haji", "hajjah", "dr", "drs", "dra", "ir", "prof", "kh", "tn", "ny", "nn", "bpk",
    "bapak", "ibu", "sdr", "sdri",
];

/// Academic titles written after a name without a comma, as their letters run together.
const AFTER: &[&str] = &[
    "sh", "se", "st", "sp", "ss", "spd", "skom", "sked", "sag", "sip", "sos", "ssos", "mm", "mh",
    "msi", "mkom", "mpd", "mt", "ma", "phd", "amd", "spdi",
];

/// How two names compare.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NameMatch {
    /// The same canonical name.
    Match,
    /// Different, with a similarity of at least [`CLOSE_AT`] (given, 0 to 1).
    Close(f64),
    /// Different beyond that (the similarity given).
    Mismatch(f64),
}

/// The canonical form of `name`: its words, as the module documentation describes.
pub fn canonical(name: &str) -> Vec<String> {
    // Titles after a comma belong to the person, not the name.
    let before_comma = name.split(',').next().unwrap_or_default();
    // Initials with dots run together first, so `S.Kom.` is the one word `skom` and
    // `K.H.` is `kh`: a word is cut at spaces and other separators, not at dots.
    let mut words: Vec<String> = before_comma
        .split(|c: char| !(c.is_alphanumeric() || c == '.'))
        .flat_map(split_dotted)
        .map(|w| respell(&w))
        .filter(|w| !w.is_empty())
        .collect();
    while words.len() > 1 && BEFORE.contains(&words[0].as_str()) {
        words.remove(0);
    }
    while words.len() > 1 && words.last().is_some_and(|w| AFTER.contains(&w.as_str())) {
        words.pop();
    }
    words
}

/// One space-separated piece: `K.H.` and `S.Kom.` are one word each (their letters together),
/// `Moh.Ali` two (a dot between words of more than one letter separates them).
fn split_dotted(piece: &str) -> Vec<String> {
    let parts: Vec<&str> = piece.split('.').filter(|p| !p.is_empty()).collect();
    let short = |p: &&str| p.chars().count() <= 3;
    if parts.len() > 1 && parts.iter().filter(|p| !short(p)).count() > 1 {
        parts.iter().map(|p| p.to_lowercase()).collect()
    } else {
        vec![parts.concat().to_lowercase()]
    }
}

/// The new spelling and the one form of a common name. In a word that shows the old
/// spelling (`dj`, `tj`, `sj`, `nj` or `oe`), a lone `j` is the old `y` (`Tjahjo` →
/// `cahyo`); elsewhere `j` is the modern letter (`Joko`) and stays.
fn respell(word: &str) -> String {
    let old = ["dj", "tj", "sj", "nj", "oe"]
        .iter()
        .any(|m| word.contains(m));
    let mut w = word
        .replace("dj", "\u{1}")
        .replace("tj", "c")
        .replace("sj", "sy")
        .replace("nj", "ny")
        .replace("oe", "u")
        .replace("ch", "kh");
    if old {
        w = w.replace('j', "y");
    }
    let w = w.replace('\u{1}', "j");
    match w.as_str() {
        "muhammad" | "muhamad" | "mohammad" | "mohamad" | "mohamed" | "muhammed" | "moh"
        | "muh" | "mhd" | "moch" | "mokh" | "mukhammad" | "mokhammad" => "muhammad".into(),
        "noor" | "nor" => "nur".into(),
        _ => w,
    }
}

/// How `a` and `b` compare (see the module documentation).
pub fn compare(a: &str, b: &str) -> NameMatch {
    let (a, b) = (canonical(a), canonical(b));
    if a == b {
        return NameMatch::Match;
    }
    let in_order = strsim::jaro_winkler(&a.join(" "), &b.join(" "));
    let sorted = |mut w: Vec<String>| {
        w.sort();
        w.join(" ")
    };
    let any_order = strsim::jaro_winkler(&sorted(a), &sorted(b));
    let similarity = in_order.max(any_order);
    if similarity >= CLOSE_AT {
        NameMatch::Close(similarity)
    } else {
        NameMatch::Mismatch(similarity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_honorifics_case_and_punctuation_are_set_aside() {
        for (written, words) in [
            ("Budi Santoso, S.Kom., M.M.", "budi santoso"),
            ("Drs. H. Ahmad Fauzi", "ahmad fauzi"),
            ("Hj. Siti Aminah", "siti aminah"),
            ("K.H. Abdul Rahman", "abdul rahman"),
            ("  SITI   nur'AINI ", "siti nur aini"),
            ("Ir. Joko Widodo S.T.", "joko widodo"),
            ("Dewi Lestari S.Pd", "dewi lestari"),
            ("H.", "h"),
        ] {
            assert_eq!(canonical(written).join(" "), words, "{written}");
        }
    }

    #[test]
    fn the_old_spelling_and_common_variants_are_one_name() {
        for (a, b) in [
            ("Soedjono", "Sujono"),
            ("Tjahjo Kumolo", "Cahyo Kumolo"),
            ("Moh. Hatta", "Muhammad Hatta"),
            ("Mohammad Hatta", "Muhamad Hatta"),
            ("Noor Hidayah", "Nur Hidayah"),
            ("Sjahrir", "Syahrir"),
            ("Chairul Tanjung", "Khairul Tanjung"),
            ("Djoko Soesilo", "Joko Susilo"),
        ] {
            assert_eq!(compare(a, b), NameMatch::Match, "{a} / {b}");
        }
    }

    #[test]
    fn close_names_and_other_people_are_told_apart() {
        // A letter mistyped, a letter missing, the order of the words: close.
        for (a, b) in [
            ("Siti Rahmawati", "Siti Rahmawaty"),
            ("Agus Setiawan", "Agus Setiyawan"),
            ("Dewi Kartika Sari", "Kartika Sari Dewi"),
            ("Fitri Handayani", "Fitri Handayan"),
        ] {
            // (The same words in another order are as similar as can be, and still not equal.)
            assert!(
                matches!(compare(a, b), NameMatch::Close(s) if s >= CLOSE_AT),
                "{a} / {b}: {:?}",
                compare(a, b)
            );
        }
        // Other people: a mismatch.
        for (a, b) in [
            ("Siti Rahmawati", "Budi Santoso"),
            ("Agus Setiawan", "Agung Sedayu"),
            ("Dewi Lestari", "Dewa Putu Lestari Wibawa"),
        ] {
            assert!(
                matches!(compare(a, b), NameMatch::Mismatch(s) if s < CLOSE_AT),
                "{a} / {b}: {:?}",
                compare(a, b)
            );
        }
    }
}
