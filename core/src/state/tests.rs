//! The store's rules on an injected clock: scopes, expiry, quotas and listing.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use alloc::{format, vec};

use super::*;

const A: Caller = Caller { agent: 1, session: 1 };
/// A's child: its own agent namespace, A's session.
const CHILD: Caller = Caller { agent: 2, session: 1 };
/// Unrelated to A.
const B: Caller = Caller { agent: 3, session: 3 };
const T0: u64 = 1_700_000_000_000;

fn put(table: &mut Table, who: Caller, scope: Scope, key: &str, json: &str) -> Result<Change, StateError> {
    table.store(who, scope, key, json.to_string(), None, T0)
}

fn value(table: &Table, who: Caller, key: &str, now: u64) -> Option<(Scope, String)> {
    table.fetch(who, key, None, now).map(|(scope, e)| (scope, e.value_json.clone()))
}

fn names(page: &KeysPage) -> Vec<(&str, Scope)> {
    page.keys.iter().map(|(k, s)| (k.as_str(), *s)).collect()
}

#[test]
fn each_scope_is_seen_by_its_own() {
    let mut t = Table::new(StateLimits::default());
    put(&mut t, A, Scope::Agent, "k", r#"{"x":1}"#).unwrap();
    put(&mut t, A, Scope::Session, "s", "2").unwrap();
    put(&mut t, A, Scope::Global, "g", "5").unwrap();

    assert_eq!(value(&t, A, "k", T0), Some((Scope::Agent, r#"{"x":1}"#.into())));
    assert_eq!(value(&t, CHILD, "k", T0), None, "agent keys are private, even to a child");
    assert_eq!(value(&t, B, "k", T0), None);

    assert_eq!(value(&t, CHILD, "s", T0), Some((Scope::Session, "2".into())));
    assert_eq!(value(&t, B, "s", T0), None, "another spawn tree has another session");

    assert_eq!(value(&t, B, "g", T0), Some((Scope::Global, "5".into())));
    assert_eq!(t.fetch(B, "g", Some(Scope::Agent), T0), None, "a scope given is the only one looked in");
}

#[test]
fn the_most_private_key_wins_and_delete_takes_it_first() {
    let mut t = Table::new(StateLimits::default());
    put(&mut t, A, Scope::Global, "k", "\"global\"").unwrap();
    put(&mut t, A, Scope::Session, "k", "\"session\"").unwrap();
    put(&mut t, A, Scope::Agent, "k", "\"agent\"").unwrap();
    assert_eq!(value(&t, A, "k", T0).unwrap().1, "\"agent\"");
    assert_eq!(value(&t, CHILD, "k", T0).unwrap().1, "\"session\"");
    assert_eq!(value(&t, B, "k", T0).unwrap().1, "\"global\"");

    let deleted = t.delete(A, "k", None, T0).unwrap();
    assert_eq!((deleted.namespace, deleted.action), (Namespace::Agent(1), Action::Deleted));
    assert_eq!(value(&t, A, "k", T0).unwrap().1, "\"session\"");
    assert_eq!(t.delete(A, "k", Some(Scope::Global), T0).unwrap().namespace, Namespace::Global);
    assert_eq!(value(&t, B, "k", T0), None);
    // B reaches neither A's agent key nor A's session.
    assert_eq!(t.delete(B, "k", None, T0), None);
    assert_eq!(value(&t, A, "k", T0).unwrap().1, "\"session\"");
}

#[test]
fn expired_keys_vanish_at_once_and_are_removed_on_expire() {
    let mut t = Table::new(StateLimits::default());
    let change = t.store(A, Scope::Global, "t", "\"v\"".into(), Some(1_000), T0).unwrap();
    assert_eq!(change.action, Action::Stored);
    assert_eq!(t.get(Namespace::Global, "t").unwrap().expires_at_ms, Some(T0 + 1_000));
    assert_eq!(t.next_expiry(), Some(T0 + 1_000));

    assert!(value(&t, B, "t", T0 + 500).is_some());
    assert_eq!(value(&t, B, "t", T0 + 1_000), None, "invisible from its expiry on, before any sweep");
    let query = KeyQuery { prefix: "t", ..KeyQuery::default() };
    assert!(t.keys(B, &query, T0 + 1_500).keys.is_empty());
    assert_eq!(t.delete(B, "t", None, T0 + 1_500), None);

    assert!(t.expire(T0 + 999).is_empty());
    let expired = t.expire(T0 + 1_500);
    let was = Entry { value_json: "\"v\"".into(), expires_at_ms: Some(T0 + 1_000), writer: A.agent };
    let gone = Change { namespace: Namespace::Global, key: "t".into(), action: Action::Expired, replaced: Some(was) };
    assert_eq!(expired, vec![gone]);
    assert_eq!((t.get(Namespace::Global, "t"), t.next_expiry(), t.total_bytes()), (None, None, 0));
}

#[test]
fn storing_again_replaces_the_value_and_its_expiry() {
    let mut t = Table::new(StateLimits::default());
    t.store(A, Scope::Global, "t", "1".into(), Some(1_000), T0).unwrap();
    t.store(A, Scope::Global, "t", "2".into(), None, T0 + 10).unwrap();
    assert_eq!(t.next_expiry(), None);
    assert!(t.expire(T0 + 5_000).is_empty());
    assert_eq!(value(&t, B, "t", T0 + 5_000).unwrap().1, "2");
    assert_eq!(t.store(A, Scope::Global, "t", "3".into(), Some(0), T0), Err(StateError::ZeroTtl));
    // A far-away expiry saturates instead of wrapping into the past.
    t.store(A, Scope::Global, "far", "0".into(), Some(u64::MAX), T0).unwrap();
    assert!(value(&t, B, "far", u64::MAX - 1).is_some());
}

#[test]
fn keys_list_what_the_caller_sees_by_prefix_in_pages() {
    let mut t = Table::new(StateLimits::default());
    for key in ["job:1", "job:2", "job:3", "other"] {
        put(&mut t, A, Scope::Global, key, "0").unwrap();
    }
    put(&mut t, A, Scope::Agent, "job:2", "0").unwrap();
    put(&mut t, A, Scope::Session, "job:9", "0").unwrap();
    put(&mut t, B, Scope::Agent, "job:b", "0").unwrap();

    let all = t.keys(A, &KeyQuery { prefix: "job:", ..KeyQuery::default() }, T0);
    let expected = [
        ("job:1", Scope::Global),
        ("job:2", Scope::Global),
        ("job:2", Scope::Agent),
        ("job:3", Scope::Global),
        ("job:9", Scope::Session),
    ];
    assert_eq!((names(&all), all.more), (expected.to_vec(), false));
    let theirs = t.keys(B, &KeyQuery { prefix: "job:", ..KeyQuery::default() }, T0);
    assert_eq!(
        names(&theirs),
        [("job:1", Scope::Global), ("job:2", Scope::Global), ("job:3", Scope::Global), ("job:b", Scope::Agent)]
    );
    let session = t.keys(CHILD, &KeyQuery { scope: Some(Scope::Session), ..KeyQuery::default() }, T0);
    assert_eq!(names(&session), [("job:9", Scope::Session)]);

    // Pages of two: the scopes of job:2 stay together, and `after` resumes.
    let mut query = KeyQuery { prefix: "job:", limit: 2, ..KeyQuery::default() };
    let first = t.keys(A, &query, T0);
    assert_eq!((names(&first), first.more), (expected[..3].to_vec(), true));
    query.after = Some("job:2");
    let second = t.keys(A, &query, T0);
    assert_eq!((names(&second), second.more), (expected[3..].to_vec(), false));
    query.after = Some("job:9");
    assert_eq!(t.keys(A, &query, T0), KeysPage::default());
}

#[test]
fn a_page_is_capped_and_a_limit_of_zero_means_the_cap() {
    let mut t = Table::new(StateLimits { max_keys_per_agent: 5_000, ..StateLimits::default() });
    for i in 0..MAX_PAGE + 5 {
        put(&mut t, A, Scope::Global, &format!("k{i:05}"), "0").unwrap();
    }
    let page = t.keys(A, &KeyQuery::default(), T0);
    assert_eq!((page.keys.len(), page.more), (MAX_PAGE, true));
    let capped = t.keys(A, &KeyQuery { limit: 1_000_000, ..KeyQuery::default() }, T0);
    assert_eq!(capped.keys.len(), MAX_PAGE);
}

#[test]
fn keys_and_values_are_checked() {
    let limits = StateLimits { max_key_bytes: 8, max_value_bytes: 16, ..StateLimits::default() };
    let mut t = Table::new(limits);
    assert_eq!(put(&mut t, A, Scope::Global, "", "1"), Err(StateError::EmptyKey));
    assert_eq!(put(&mut t, A, Scope::Global, "123456789", "1"), Err(StateError::KeyTooLong { len: 9, max: 8 }));
    let big = format!("\"{}\"", "x".repeat(15));
    let err = put(&mut t, A, Scope::Global, "k", &big).unwrap_err();
    assert_eq!(err, StateError::ValueTooLarge { key: "k".into(), len: 17, max: 16 });
    assert!(err.to_string().contains("17 bytes"), "{err}");
    for bad in ["", "{", "nope", "1 2", "NaN"] {
        let err = put(&mut t, A, Scope::Global, "k", bad).unwrap_err();
        assert!(matches!(err, StateError::NotJson { .. }) && err.is_invalid(), "{bad}: {err}");
    }
    assert!(!err.is_invalid());
    assert_eq!(t.total_bytes(), 0);
    put(&mut t, A, Scope::Global, "k", "[1,[2,{}]]").unwrap();
}

#[test]
fn quotas_count_what_each_agent_wrote_last() {
    let limits = StateLimits { max_keys_per_agent: 2, max_bytes_per_agent: 20, ..StateLimits::default() };
    let mut t = Table::new(limits);
    put(&mut t, A, Scope::Agent, "a", "1").unwrap();
    put(&mut t, A, Scope::Global, "b", "1").unwrap();
    // Replacing one's own key costs no new key.
    put(&mut t, A, Scope::Global, "b", "22").unwrap();
    let err = put(&mut t, A, Scope::Session, "c", "1").unwrap_err();
    assert_eq!(err, StateError::KeyQuota { key: "c".into(), agent: 1, keys: 3, max: 2 });

    // B takes over "b": it counts against B now, and A has room again.
    put(&mut t, B, Scope::Global, "b", "3").unwrap();
    put(&mut t, A, Scope::Session, "c", "1").unwrap();
    let err = put(&mut t, B, Scope::Global, "big", "123456789012345678").unwrap_err();
    assert!(matches!(err, StateError::ByteQuota { agent: 3, bytes: 23, max: 20, .. }), "{err}");

    // Deleting and expiring give the room back.
    t.delete(A, "c", None, T0).unwrap();
    t.store(A, Scope::Global, "t", "1".into(), Some(5), T0).unwrap();
    assert!(put(&mut t, A, Scope::Global, "d", "1").is_err());
    t.expire(T0 + 5);
    put(&mut t, A, Scope::Global, "d", "1").unwrap();
}

#[test]
fn the_whole_store_has_a_cap() {
    let mut t = Table::new(StateLimits { max_total_bytes: 10, ..StateLimits::default() });
    put(&mut t, A, Scope::Global, "a", "1234").unwrap();
    let err = put(&mut t, B, Scope::Global, "b", "123456").unwrap_err();
    assert_eq!(err, StateError::StoreFull { key: "b".into(), bytes: 12, max: 10 });
    // Replacing frees the old value's bytes first.
    put(&mut t, B, Scope::Global, "a", "12345678").unwrap();
    assert_eq!(t.total_bytes(), 9);
}

#[test]
fn loaded_entries_count_against_nobody_and_pass_the_caps() {
    let mut t = Table::new(StateLimits { max_keys_per_agent: 1, ..StateLimits::default() });
    for key in ["x", "y"] {
        let entry = Entry { value_json: "0".into(), expires_at_ms: Some(T0 + 10), writer: EARLIER_RUN };
        t.restore(Namespace::Global, key.into(), Some(entry));
    }
    // Agent 1 of this run is not charged for what an agent 1 of the last run wrote.
    put(&mut t, A, Scope::Global, "z", "0").unwrap();
    assert_eq!(t.expire(T0 + 10).len(), 2);
}

#[test]
fn dropping_a_namespace_frees_it_and_its_expiries() {
    let mut t = Table::new(StateLimits::default());
    t.store(A, Scope::Agent, "a", "1".into(), Some(10), T0).unwrap();
    put(&mut t, A, Scope::Agent, "b", "1").unwrap();
    put(&mut t, A, Scope::Global, "g", "1").unwrap();
    t.drop_namespace(Namespace::Agent(A.agent));
    assert_eq!((t.get(Namespace::Agent(1), "b"), t.next_expiry()), (None, None));
    assert_eq!(t.total_bytes(), 2);
    assert!(t.expire(u64::MAX).is_empty());
}

#[test]
fn a_change_carries_what_it_replaced_so_it_can_be_undone() {
    let mut t = Table::new(StateLimits::default());
    let first = put(&mut t, A, Scope::Global, "k", "1").unwrap();
    assert_eq!(first.replaced, None);
    let second = put(&mut t, B, Scope::Global, "k", "2").unwrap();
    let one = Entry { value_json: "1".into(), expires_at_ms: None, writer: A.agent };
    assert_eq!(second.replaced.as_ref(), Some(&one));
    let deleted = t.delete(A, "k", None, T0).unwrap();

    // Undone newest first, the table is as before all three, usage included.
    t.restore(deleted.namespace, deleted.key, deleted.replaced);
    assert_eq!(value(&t, A, "k", T0).unwrap().1, "2");
    t.restore(second.namespace, second.key, second.replaced);
    t.restore(first.namespace, first.key, first.replaced);
    assert_eq!((t.get(Namespace::Global, "k"), t.total_bytes()), (None, 0));
    let limits = StateLimits { max_keys_per_agent: 1, ..StateLimits::default() };
    let mut t = Table::new(limits);
    let change = put(&mut t, A, Scope::Global, "x", "1").unwrap();
    t.restore(change.namespace, change.key, change.replaced);
    put(&mut t, A, Scope::Global, "y", "1").unwrap();
}
