//! Counts the primes below N (the event data, as ASCII decimal) with a sieve:
//! deterministic work that grows with its input, so fuel can be compared
//! across inputs. Non-numeric input is a guest error, not a trap.

use nimbus_guest::{Event, Guest, HandlerError, Response};

struct Compute;

/// Keeps a tenant's typo from becoming a multi-gigabyte allocation.
const MAX_N: usize = 100_000_000;

impl Guest for Compute {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let text = std::str::from_utf8(&event.data)
            .map_err(|_| HandlerError::InvalidInput("data is not UTF-8".into()))?;
        let n: usize = text.trim().parse().map_err(|_| {
            HandlerError::InvalidInput(format!("expected a decimal number, got {text:?}"))
        })?;
        if n > MAX_N {
            return Err(HandlerError::InvalidInput(format!(
                "{n} is above the limit of {MAX_N}"
            )));
        }
        let count = count_primes_below(n);
        println!("primes below {n}: {count}");
        Ok(Response {
            content_type: Some("text/plain".into()),
            data: count.to_string().into_bytes(),
        })
    }
}

fn count_primes_below(n: usize) -> usize {
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

nimbus_guest::export!(Compute);
