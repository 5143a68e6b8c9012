//! Text a peer chose, made safe for a log line: a control character (a newline, an escape
//! sequence) in a `kid`, a `typ`, a relayed problem's `detail` or a witness's reason would
//! otherwise start a forged line or recolour a terminal, so each is written escaped.

use std::fmt;

/// Displays its text with every control character escaped as Rust escapes it (`\n`,
/// `\u{1b}`); everything else as it is.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let text = "kid `a\nINFO forged line` \u{1b}[31mred\u{7f} é ✓";
        let shown = Escaped(text).to_string();
        assert_eq!(
            shown,
            "kid `a\\nINFO forged line` \\u{1b}[31mred\\u{7f} é ✓"
        );
        assert!(!shown.chars().any(char::is_control));
    }
}
