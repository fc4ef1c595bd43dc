//! Per-agent LLM quotas, the policy's [`LlmQuota`]: calls and tokens, checked at submit.

use crate::policy::LlmQuota;

use super::FairError;

/// An agent's quota and what it has taken of it.
#[derive(Debug, Clone, Default)]
pub(super) struct QuotaUse {
    pub quota: LlmQuota,
    /// Requests submitted and not cancelled.
    calls: u64,
    /// Tokens the provider reported for finished requests.
    used_tokens: u64,
    /// Estimated tokens of requests waiting or running.
    reserved_tokens: u64,
}

impl QuotaUse {
    /// Takes one call and `tokens` (an estimate) from the quota, or names the limit that refuses them.
    pub fn reserve(&mut self, agent: u64, tokens: u64) -> Result<(), FairError> {
        if let Some(max_calls) = self.quota.max_calls {
            if self.calls >= max_calls {
                return Err(FairError::CallQuota { agent, max_calls });
            }
        }
        let committed = self.used_tokens.saturating_add(self.reserved_tokens);
        if let Some(max_tokens) = self.quota.max_tokens {
            if committed.saturating_add(tokens) > max_tokens {
                return Err(FairError::TokenQuota { agent, committed, requested: tokens, max_tokens });
            }
        }
        self.calls += 1;
        self.reserved_tokens = self.reserved_tokens.saturating_add(tokens);
        Ok(())
    }

    /// A request finished: its estimate gives way to what it used, which may exceed the quota (then
    /// the next submit fails).
    pub fn settle(&mut self, estimated: u64, used: u64) {
        self.reserved_tokens = self.reserved_tokens.saturating_sub(estimated);
        self.used_tokens = self.used_tokens.saturating_add(used);
    }

    /// A request was cancelled before it started: its call and estimate are given back.
    pub fn release(&mut self, estimated: u64) {
        self.calls = self.calls.saturating_sub(1);
        self.reserved_tokens = self.reserved_tokens.saturating_sub(estimated);
    }
}
