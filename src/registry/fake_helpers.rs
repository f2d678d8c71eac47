//! A credential-helper runner for unit tests: it answers from a table, keeps what it is
//! told to store, and records every call as `(action helper, server)`.

use super::credentials::{CredentialsError, HelperAnswer, HelperRunner};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct FakeHelpers {
    /// `(helper, server)` → `(username, secret)`.
    pub answers: Mutex<BTreeMap<(String, String), (String, String)>>,
    /// `(helper, server)` of `get` calls.
    pub calls: Mutex<Vec<(String, String)>>,
    /// `(action, helper, server)` of `store` and `erase` calls.
    pub changes: Mutex<Vec<(String, String, String)>>,
}

impl HelperRunner for FakeHelpers {
    fn get(&self, helper: &str, server: &str) -> Result<Option<HelperAnswer>, CredentialsError> {
        self.calls.lock().unwrap().push((helper.to_string(), server.to_string()));
        Ok(self
            .answers
            .lock()
            .unwrap()
            .get(&(helper.to_string(), server.to_string()))
            .map(|(u, s)| HelperAnswer { username: u.clone(), secret: s.clone() }))
    }

    fn store(
        &self,
        helper: &str,
        server: &str,
        username: &str,
        secret: &str,
    ) -> Result<(), CredentialsError> {
        self.changes.lock().unwrap().push(("store".into(), helper.into(), server.into()));
        let key = (helper.to_string(), server.to_string());
        self.answers.lock().unwrap().insert(key, (username.to_string(), secret.to_string()));
        Ok(())
    }

    fn erase(&self, helper: &str, server: &str) -> Result<(), CredentialsError> {
        self.changes.lock().unwrap().push(("erase".into(), helper.into(), server.into()));
        self.answers.lock().unwrap().remove(&(helper.to_string(), server.to_string()));
        Ok(())
    }
}
