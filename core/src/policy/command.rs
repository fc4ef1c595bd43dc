//! Command lines: splitting one into words without a shell, and the allow and deny lists.

use alloc::string::String;
use alloc::vec::Vec;

/// Why a command line cannot be split without a shell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated quote in command line")]
    UnterminatedQuote,
    #[error("command line uses shell syntax '{0}', which needs a shell the policy does not allow")]
    ShellSyntax(char),
    #[error("command line is empty")]
    Empty,
}

/// Characters that mean something different to a shell than to a program's argv.
const SHELL_SPECIAL: &[char] = &['|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', '~', '\n', '#'];

/// Splits a command line into words the way a POSIX shell would for simple commands: whitespace
/// separates words, single quotes are literal, double quotes allow `\"` `\\` `\$` and `` \` ``, a
/// backslash outside quotes escapes the next character. Anything a shell would expand or interpret
/// (pipes, redirections, variables, globs) is refused rather than passed on literally.
pub fn split_words(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote),
                        },
                        Some(c @ ('$' | '`')) => return Err(SplitError::ShellSyntax(c)),
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(SplitError::UnterminatedQuote),
                }
            }
            c if SHELL_SPECIAL.contains(&c) => return Err(SplitError::ShellSyntax(c)),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

/// Joins argv into one line for display and for the deny list, quoting words that need it.
pub fn join_words(argv: &[String]) -> String {
    let mut line = String::new();
    for (i, word) in argv.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            line.push_str(word);
        } else {
            line.push('\'');
            line.push_str(&word.replace('\'', "'\\''"));
            line.push('\'');
        }
    }
    line
}

/// Whether `program` (argv\[0\]) and its command line pass an allow list: `"*"` allows anything; an
/// entry without a space names a program (by full path or by file name); an entry with spaces must be
/// a word-wise prefix of the line.
pub fn command_allowed(allow: &[String], argv: &[String]) -> bool {
    let Some(program) = argv.first() else {
        return false;
    };
    let file_name = program.rsplit('/').next().unwrap_or(program);
    allow.iter().any(|entry| {
        if entry == "*" {
            return true;
        }
        if !entry.contains(' ') {
            return entry == program || entry == file_name;
        }
        let prefix: Vec<&str> = entry.split_whitespace().collect();
        prefix.len() <= argv.len() && prefix.iter().zip(argv).all(|(p, a)| *p == a.as_str())
    })
}

/// The first deny-list entry found in the command line, if any (substring match, as the seed).
pub fn command_blocked<'a>(deny: &'a [String], line: &str) -> Option<&'a str> {
    deny.iter().map(String::as_str).find(|entry| !entry.is_empty() && line.contains(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split_words("echo hi  there").unwrap(), words(&["echo", "hi", "there"]));
        assert_eq!(split_words("echo 'a b' \"c d\"").unwrap(), words(&["echo", "a b", "c d"]));
        assert_eq!(split_words(r#"echo "q\"x" a\ b"#).unwrap(), words(&["echo", "q\"x", "a b"]));
        assert_eq!(split_words("printf ''").unwrap(), words(&["printf", ""]));
    }

    #[test]
    fn refuses_shell_syntax() {
        assert_eq!(split_words("ls | sh"), Err(SplitError::ShellSyntax('|')));
        assert_eq!(split_words("echo $HOME"), Err(SplitError::ShellSyntax('$')));
        assert_eq!(split_words("echo \"$(id)\""), Err(SplitError::ShellSyntax('$')));
        assert_eq!(split_words("cat a; rm b"), Err(SplitError::ShellSyntax(';')));
        assert_eq!(split_words("ls *.txt"), Err(SplitError::ShellSyntax('*')));
        assert_eq!(split_words("echo 'open"), Err(SplitError::UnterminatedQuote));
        assert_eq!(split_words("   "), Err(SplitError::Empty));
        // Quoted, the same characters are plain text.
        assert_eq!(split_words("echo 'a|b;$c'").unwrap(), words(&["echo", "a|b;$c"]));
    }

    #[test]
    fn join_quotes_what_needs_it() {
        assert_eq!(join_words(&words(&["echo", "a b", "it's"])), "echo 'a b' 'it'\\''s'");
        assert_eq!(split_words(&join_words(&words(&["x", "a b", "it's"]))).unwrap(), words(&["x", "a b", "it's"]));
    }

    #[test]
    fn allow_list_matches_programs_and_prefixes() {
        let allow = vec!["python3".to_string(), "git status".to_string()];
        assert!(command_allowed(&allow, &words(&["python3", "-c", "1"])));
        assert!(command_allowed(&allow, &words(&["/usr/bin/python3"])));
        assert!(command_allowed(&allow, &words(&["git", "status", "-s"])));
        assert!(!command_allowed(&allow, &words(&["git", "push"])));
        assert!(!command_allowed(&allow, &words(&["ls"])));
        assert!(!command_allowed(&[], &words(&["ls"])));
        assert!(command_allowed(&["*".to_string()], &words(&["ls"])));
    }

    #[test]
    fn deny_list_is_a_substring_match() {
        let deny = vec!["sudo".to_string(), "rm -rf /".to_string()];
        assert_eq!(command_blocked(&deny, "sudo ls"), Some("sudo"));
        assert_eq!(command_blocked(&deny, "rm -rf /home"), Some("rm -rf /"));
        assert_eq!(command_blocked(&deny, "ls -l"), None);
    }
}
