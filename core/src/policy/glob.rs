//! Path globs: `*` and `?` match within one path component, `**` as a whole component matches any
//! number of components (including none). Everything else is literal.

/// Whether `path` (absolute, normalised) matches `pattern`.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    let pattern: alloc::vec::Vec<&str> = components(pattern).collect();
    let path: alloc::vec::Vec<&str> = components(path).collect();
    match_components(&pattern, &path)
}

fn components(s: &str) -> impl Iterator<Item = &str> {
    s.split('/').filter(|c| !c.is_empty())
}

fn match_components(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_components(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((name, path_rest)) => {
                match_component(first.as_bytes(), name.as_bytes()) && match_components(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one component, by backtracking over the last `*`.
fn match_component(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether every path `inner` matches is also matched by `outer`, as far as can be shown cheaply:
/// equal patterns, or `outer` is a literal directory followed by `**` that `inner` stays under.
/// `false` means "not shown", which callers treat as "not within".
pub fn glob_within(inner: &str, outer: &str) -> bool {
    if inner == outer {
        return true;
    }
    let Some(dir) = outer.strip_suffix("**") else {
        return false;
    };
    let literal_dir = !dir.contains(['*', '?']);
    literal_dir && dir.ends_with('/') && inner.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_within_one_component() {
        assert!(glob_matches("/tmp/*", "/tmp/a"));
        assert!(!glob_matches("/tmp/*", "/tmp/a/b"));
        assert!(glob_matches("/tmp/*.txt", "/tmp/notes.txt"));
        assert!(!glob_matches("/tmp/*.txt", "/tmp/notes.txt.bak"));
        assert!(glob_matches("/tmp/a?c", "/tmp/abc"));
        assert!(!glob_matches("/tmp/a?c", "/tmp/a/c"));
    }

    #[test]
    fn double_star_spans_any_depth() {
        assert!(glob_matches("/tmp/**", "/tmp"));
        assert!(glob_matches("/tmp/**", "/tmp/a/b/c"));
        assert!(glob_matches("/**", "/etc/shadow"));
        assert!(glob_matches("**/.env", "/home/u/project/.env"));
        assert!(glob_matches("**/*token*", "/srv/app/api_token.txt"));
        assert!(!glob_matches("**/.env", "/home/u/.envrc"));
        assert!(!glob_matches("/tmp/**", "/tmpfoo/x"));
    }

    #[test]
    fn backtracking_over_several_stars() {
        assert!(glob_matches("/x/*a*b*", "/x/zzazzbzz"));
        assert!(!glob_matches("/x/*a*b", "/x/zzazzbzz"));
    }

    #[test]
    fn within_is_conservative() {
        assert!(glob_within("/tmp/**", "/**"));
        assert!(glob_within("/tmp/*.txt", "/tmp/**"));
        assert!(glob_within("/tmp/**", "/tmp/**"));
        assert!(!glob_within("/**", "/tmp/**"));
        assert!(!glob_within("/tmpx/**", "/tmp/**"));
        assert!(!glob_within("/home/**", "/tmp/**"));
        assert!(!glob_within("/tmp/a", "/t*/**"));
    }
}
