//! The ledger's accounts: balances by name, found with one hash of the name
//! and, for names of up to 8 bytes (most of them), compared as one word.

use hashbrown::HashTable;

use super::money::Balance;

/// Balances by account name. See the module doc.
pub(super) struct Accounts {
    /// Names come from untrusted clients, so the hash must be randomly keyed
    /// (a fixed one would let a client flood one bucket): ahash's
    /// `RandomState` is.
    hasher: ahash::RandomState,
    /// `hashbrown`'s table rather than std's map: it finds or inserts with
    /// one hash of a borrowed name and our own equality.
    table: HashTable<Account>,
}

struct Account {
    /// The name's first 8 bytes, zero-padded: compared before the rest.
    head: u64,
    name: Box<[u8]>,
    balance: Balance,
}

/// A name looked up: the name and what the table compares and hashes.
struct Key<'a> {
    name: &'a [u8],
    head: u64,
    hash: u64,
}

impl Accounts {
    pub(super) fn new() -> Self {
        Accounts {
            hasher: ahash::RandomState::new(),
            table: HashTable::new(),
        }
    }

    #[inline(always)]
    fn key<'a>(&self, name: &'a [u8]) -> Key<'a> {
        let head = head(name);
        Key {
            name,
            head,
            hash: hash(&self.hasher, name, head),
        }
    }

    /// The balance of `name`, created by `new` if the name has none.
    #[inline(always)]
    pub(super) fn get_or_insert_with(
        &mut self,
        name: &[u8],
        new: impl FnOnce() -> Balance,
    ) -> &mut Balance {
        let key = self.key(name);
        // A hit (every line but an account's first) probes without the
        // insert path's capacity check; a miss goes out of line.
        match self
            .table
            .find_entry(key.hash, |account| matches(account, &key))
        {
            Ok(entry) => &mut entry.into_mut().balance,
            Err(absent) => insert(absent.into_table(), &self.hasher, key, new()),
        }
    }

    pub(super) fn get(&self, name: &[u8]) -> Option<&Balance> {
        let key = self.key(name);
        self.table
            .find(key.hash, |account| matches(account, &key))
            .map(|account| &account.balance)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &Balance)> {
        self.table.iter().map(|a| (&*a.name, &a.balance))
    }

    pub(super) fn into_iter(self) -> impl Iterator<Item = (Box<[u8]>, Balance)> {
        self.table.into_iter().map(|a| (a.name, a.balance))
    }
}

/// A new account (see [`Accounts::get_or_insert_with`]).
#[cold]
fn insert<'t>(
    table: &'t mut HashTable<Account>,
    hasher: &ahash::RandomState,
    key: Key<'_>,
    balance: Balance,
) -> &'t mut Balance {
    let account = Account {
        head: key.head,
        name: Box::from(key.name),
        balance,
    };
    let rehash = |account: &Account| rehash(hasher, account);
    &mut table
        .insert_unique(key.hash, account, rehash)
        .into_mut()
        .balance
}

#[inline(always)]
fn matches(account: &Account, key: &Key<'_>) -> bool {
    account.head == key.head
        && account.name.len() == key.name.len()
        && (key.name.len() <= 8 || account.name[8..] == key.name[8..])
}

/// The hash of `name`, whose [`head`] is `head`. A name of up to 8 bytes is
/// hashed as one word, its head with its length in the top byte (which is
/// zero up to 7 bytes; an 8-byte name may share a word with a 7-byte one,
/// which only costs a compare); a longer one is hashed whole.
#[inline(always)]
fn hash(hasher: &ahash::RandomState, name: &[u8], head: u64) -> u64 {
    if name.len() <= 8 {
        hasher.hash_one(head ^ ((name.len() as u64) << 56))
    } else {
        hasher.hash_one(name)
    }
}

/// The hash [`Accounts::key`] gave the account's name, for a table growing.
fn rehash(hasher: &ahash::RandomState, account: &Account) -> u64 {
    hash(hasher, &account.name, account.head)
}

/// The first 8 bytes of `name` as a little-endian word, zero-padded. A
/// shorter name is read as two overlapping loads (as ahash reads short
/// input), not a copy.
#[inline(always)]
fn head(name: &[u8]) -> u64 {
    if let Some(first) = name.first_chunk::<8>() {
        return u64::from_le_bytes(*first);
    }
    let n = name.len();
    let pair = |lo: u64, hi: u64, width: usize| lo | (hi << (8 * (n - width)));
    match (name.first_chunk::<4>(), name.last_chunk::<4>()) {
        (Some(lo), Some(hi)) => pair(
            u64::from(u32::from_le_bytes(*lo)),
            u64::from(u32::from_le_bytes(*hi)),
            4,
        ),
        _ => match (name.first_chunk::<2>(), name.last_chunk::<2>()) {
            (Some(lo), Some(hi)) => pair(
                u64::from(u16::from_le_bytes(*lo)),
                u64::from(u16::from_le_bytes(*hi)),
                2,
            ),
            _ => name.first().map_or(0, |&b| u64::from(b)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn head_is_the_first_8_bytes_zero_padded(name in prop::collection::vec(any::<u8>(), 0..12)) {
            let mut padded = [0u8; 8];
            let n = name.len().min(8);
            padded[..n].copy_from_slice(&name[..n]);
            prop_assert_eq!(head(&name), u64::from_le_bytes(padded));
        }

        #[test]
        fn accounts_agree_with_a_map(
            names in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b', 0xff]), 0..11),
                1..40,
            ),
        ) {
            // Names that share heads, lengths and prefixes, with zero bytes
            // (which padding must not confuse with a shorter name).
            let mut accounts = Accounts::new();
            let mut model = std::collections::BTreeMap::new();
            for (i, name) in names.iter().enumerate() {
                let i = i as i128;
                let balance = accounts.get_or_insert_with(name, || Balance::new(0, 0));
                prop_assert!(balance.add(i, 0));
                *model.entry(name.clone()).or_insert(0) += i;
            }
            prop_assert_eq!(accounts.iter().count(), model.len());
            for (name, &sum) in &model {
                prop_assert_eq!(accounts.get(name), Some(&Balance::new(sum, 0)));
            }
            prop_assert_eq!(accounts.get(b"never"), None);
        }
    }
}
