//! POSIX shell quoting for command strings sent over SSH (the protocol carries one string
//! that the remote login shell parses, so every argument we build must be quoted).

/// Quote `s` as a single POSIX shell word: wrapped in single quotes, with each embedded
/// single quote written as `'\''`. Safe for any byte content, including newlines.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::sh_quote;
    use std::process::Command;

    #[test]
    fn quotes_plain_and_empty() {
        assert_eq!(sh_quote("abc"), "'abc'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    /// The real test: /bin/sh must give back exactly the original string.
    #[test]
    fn round_trips_through_sh() {
        let cases = [
            "plain",
            "",
            "with space",
            "it's",
            "''''",
            "$(touch /nonexistent/x) `id` $HOME ${X:-y}",
            "a\nb\n",
            "tab\there; rm -rf /nonexistent & | > < * ? [ ] ~ # ! \\ \"",
            "ünïcødé ✓",
        ];
        for case in cases {
            let script = format!("printf '%s' {}", sh_quote(case));
            let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
            assert!(out.status.success(), "{script}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), case, "{script}");
        }
    }

    /// Nested quoting, as `sudo -n sh -c '<quoted>'` does, also survives.
    #[test]
    fn nested_quoting_round_trips() {
        let inner = "printf '%s|' \"$0\" 'x y' \"it's\"";
        let script = format!("sh -c {}", sh_quote(inner));
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "sh|x y|it's|");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any string (NUL cannot be in a command line) survives `sh` unchanged.
        #[test]
        fn any_string_round_trips(s in "[^\\x00]{0,40}") {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", sh_quote(&s)))
                .output()
                .unwrap();
            proptest::prop_assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
