//! The attributes' arguments: `workers = N, preempt_quantum_ms = N`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, MetaNameValue, Token};

/// What the attribute was given; `None` leaves the Builder's default.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Args {
    pub workers: Option<usize>,
    pub preempt_quantum_ms: Option<u64>,
}

const KEYS: &str = "`workers` or `preempt_quantum_ms`";

/// Parses `key = integer, ...`; every error points at the offending token.
pub(crate) fn parse(args: TokenStream) -> syn::Result<Args> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated
        .parse2(args)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected `key = value` arguments ({KEYS}), e.g. `workers = 2`: {e}"),
            )
        })?;
    let mut out = Args::default();
    for pair in pairs {
        let key = pair
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "workers" => {
                let n = positive(&key, &pair.value)?;
                set(&mut out.workers, n as usize, &pair)?;
            }
            "preempt_quantum_ms" => {
                let n = positive(&key, &pair.value)?;
                set(&mut out.preempt_quantum_ms, n, &pair)?;
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    &pair.path,
                    format!("unknown argument: expected {KEYS}"),
                ))
            }
        }
    }
    Ok(out)
}

fn set<T>(slot: &mut Option<T>, value: T, pair: &MetaNameValue) -> syn::Result<()> {
    if slot.replace(value).is_some() {
        return Err(syn::Error::new_spanned(&pair.path, "argument given twice"));
    }
    Ok(())
}

/// An integer literal of at least 1.
fn positive(key: &str, value: &Expr) -> syn::Result<u64> {
    let wrong = || {
        syn::Error::new_spanned(
            value,
            format!("`{key}` takes a positive integer literal, e.g. `{key} = 2`"),
        )
    };
    let Expr::Lit(ExprLit {
        lit: Lit::Int(int), ..
    }) = value
    else {
        return Err(wrong());
    };
    match int.base10_parse::<u64>() {
        Ok(0) => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be at least 1"),
        )),
        Ok(n) if usize::try_from(n).is_ok() => Ok(n),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn err(args: TokenStream) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn empty_and_both_keys() {
        assert_eq!(parse(quote!()).unwrap(), Args::default());
        assert_eq!(
            parse(quote!(workers = 2, preempt_quantum_ms = 1,)).unwrap(),
            Args {
                workers: Some(2),
                preempt_quantum_ms: Some(1)
            }
        );
        assert_eq!(
            parse(quote!(preempt_quantum_ms = 5))
                .unwrap()
                .preempt_quantum_ms,
            Some(5)
        );
    }

    #[test]
    fn unknown_key_names_the_accepted_ones() {
        let e = err(quote!(threads = 2));
        assert!(e.contains("unknown argument"), "{e}");
        assert!(e.contains("`workers` or `preempt_quantum_ms`"), "{e}");
    }

    #[test]
    fn wrong_value_types_and_zero() {
        for bad in [
            quote!(workers = "2"),
            quote!(workers = 2.5),
            quote!(workers = n),
        ] {
            let e = err(bad);
            assert!(
                e.contains("`workers` takes a positive integer literal"),
                "{e}"
            );
        }
        let e = err(quote!(preempt_quantum_ms = true));
        assert!(
            e.contains("`preempt_quantum_ms` takes a positive integer"),
            "{e}"
        );
        let e = err(quote!(workers = 0));
        assert!(e.contains("`workers` must be at least 1"), "{e}");
    }

    #[test]
    fn duplicates_and_malformed() {
        assert!(err(quote!(workers = 1, workers = 2)).contains("given twice"));
        let e = err(quote!(workers));
        assert!(e.contains("expected `key = value` arguments"), "{e}");
        let e = err(quote!(workers(2)));
        assert!(e.contains("expected `key = value` arguments"), "{e}");
    }
}
