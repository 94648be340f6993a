//! The `#[greenrt::main]` and `#[greenrt::test]` attributes. Use them
//! through the `greenrt` crate, which re-exports them; the generated code
//! names `::greenrt`.
//!
//! Both take the same optional arguments, `workers = N` (N ≥ 1) and
//! `preempt_quantum_ms = N` (N ≥ 1), and wrap the function's body in
//! `Builder::new()…build()…block_on(move || body)`: the body runs as the
//! main green thread of a runtime of its own, which is shut down when it
//! returns.

#![warn(missing_docs)]

mod args;
mod expand;

use proc_macro::TokenStream;

/// Runs `fn main` as the main green thread of a new greenrt runtime.
///
/// ```ignore
/// #[greenrt::main(workers = 2, preempt_quantum_ms = 1)]
/// fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let h = greenrt::spawn(|| 6 * 7);
///     assert_eq!(h.join().unwrap(), 42);
///     Ok(())
/// }
/// ```
///
/// Arguments: `workers = N` (default: `GREENRT_WORKERS`, else one per CPU)
/// and `preempt_quantum_ms = N` (default 10). The function takes no
/// arguments, is not `async` (green threads block, they are not futures),
/// and returns `()` or any `Send` type (e.g. a `Result` whose error is
/// `Send`: the value comes back from the green thread). A runtime that
/// cannot be built (e.g. a bad `GREENRT_*` variable) is a panic naming
/// the cause.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(expand::Kind::Main, args.into(), item.into()).into()
}

/// Runs a test as the main green thread of a runtime of its own.
///
/// ```ignore
/// #[greenrt::test(workers = 1)]
/// fn spawns_and_joins() {
///     assert_eq!(greenrt::spawn(|| 6 * 7).join().unwrap(), 42);
/// }
/// ```
///
/// Same arguments and rules as [`macro@main`]; the function becomes a
/// `#[test]`, and other attributes (`#[should_panic]`, `#[ignore]`) apply
/// as usual: a panic in the body is resumed on the test's thread.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(expand::Kind::Test, args.into(), item.into()).into()
}
