//! Checks the function's signature and wraps its body in a runtime.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType};

use crate::args::{self, Args};

/// Which attribute: they differ only in the name used in errors and the
/// `#[test]` added to tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Test,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Main => "#[greenrt::main]",
            Kind::Test => "#[greenrt::test]",
        }
    }
}

/// The attribute's expansion, or the errors followed by the item
/// unchanged (so the rest of the crate reports no follow-on errors such as
/// a missing `main`).
pub(crate) fn attribute(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let f = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("{} applies to a function: {e}", kind.name());
            let err = syn::Error::new(e.span(), msg).into_compile_error();
            return quote!(#err #item);
        }
    };
    let args = args::parse(args);
    let sig = check_signature(kind, &f);
    match (args, sig) {
        (Ok(args), Ok(())) => expand(kind, &args, f),
        (args, sig) => {
            let errs = [args.err(), sig.err()]
                .into_iter()
                .flatten()
                .map(syn::Error::into_compile_error);
            quote!(#(#errs)* #item)
        }
    }
}

/// No `async`, no arguments, no generics: the body runs as a plain
/// closure on a green thread.
pub(crate) fn check_signature(kind: Kind, f: &ItemFn) -> syn::Result<()> {
    let sig = &f.sig;
    if let Some(a) = sig.asyncness {
        return Err(syn::Error::new(
            a.span(),
            "greenrt green threads are not async: remove `async`",
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            format!("{}: the function takes no arguments", kind.name()),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!("{}: the function cannot be generic", kind.name()),
        ));
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let syn::Type::ImplTrait(t) = &**ty {
            // The body becomes a closure, whose return type cannot be
            // `impl Trait`: say so here rather than in rustc's words.
            return Err(syn::Error::new(
                t.span(),
                format!(
                    "{}: the return type must be a concrete type, not `impl Trait` \
                     (e.g. `()`, `Result<(), E>` or `std::process::ExitCode`)",
                    kind.name()
                ),
            ));
        }
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            format!("{}: no variadics", kind.name()),
        ));
    }
    Ok(())
}

/// `fn name() -> R { Builder…build()…block_on(move || -> R body) }`.
pub(crate) fn expand(kind: Kind, args: &Args, f: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    let workers = args.workers.map(|n| quote!(.workers(#n)));
    let quantum = args
        .preempt_quantum_ms
        .map(|ms| quote!(.preempt_quantum(::std::time::Duration::from_millis(#ms))));
    let ret = match &sig.output {
        ReturnType::Default => quote!(),
        ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
    };
    let what = kind.name();
    // Spanned at the body, so that a return type that is not `Send` is
    // reported there. No binding: the body cannot capture a name of ours.
    let body = quote_spanned! {block.span()=>
        ::greenrt::Builder::new()
            #workers
            #quantum
            .build()
            .unwrap_or_else(|e| ::std::panic!("{}: cannot build the runtime: {}", #what, e))
            .block_on(move || #ret #block)
    };
    let test_attr = (kind == Kind::Test).then(|| quote!(#[::core::prelude::v1::test]));
    let sig = sig.into_token_stream();
    quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            #body
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn sig_err(kind: Kind, item: TokenStream) -> String {
        let f: ItemFn = syn::parse2(item).unwrap();
        check_signature(kind, &f).unwrap_err().to_string()
    }

    #[test]
    fn rejects_async_with_the_documented_message() {
        let e = sig_err(
            Kind::Main,
            quote!(
                async fn main() {}
            ),
        );
        assert_eq!(e, "greenrt green threads are not async: remove `async`");
        let e = sig_err(
            Kind::Test,
            quote!(
                async fn t() {}
            ),
        );
        assert_eq!(e, "greenrt green threads are not async: remove `async`");
    }

    #[test]
    fn rejects_arguments_and_generics() {
        let e = sig_err(
            Kind::Main,
            quote!(
                fn main(args: Vec<String>) {}
            ),
        );
        assert_eq!(e, "#[greenrt::main]: the function takes no arguments");
        let e = sig_err(
            Kind::Test,
            quote!(
                fn t<T: Default>() {}
            ),
        );
        assert_eq!(e, "#[greenrt::test]: the function cannot be generic");
    }

    #[test]
    fn rejects_impl_trait_returns_naming_the_attribute() {
        let e = sig_err(
            Kind::Main,
            quote!(
                fn main() -> impl std::process::Termination {}
            ),
        );
        assert!(
            e.starts_with("#[greenrt::main]: the return type must be a concrete type"),
            "{e}"
        );
    }

    #[test]
    fn accepts_unit_and_result_returns() {
        for item in [
            quote!(
                fn main() {}
            ),
            quote!(
                fn main() -> Result<(), std::io::Error> {
                    Ok(())
                }
            ),
        ] {
            let f: ItemFn = syn::parse2(item).unwrap();
            check_signature(Kind::Main, &f).unwrap();
        }
    }

    #[test]
    fn expansion_builds_a_runtime_with_the_arguments() {
        let out = attribute(
            Kind::Test,
            quote!(workers = 2, preempt_quantum_ms = 1),
            quote!(
                #[should_panic]
                fn t() -> Result<(), E> {
                    Ok(())
                }
            ),
        )
        .to_string();
        for want in [
            "# [:: core :: prelude :: v1 :: test] # [should_panic]",
            ":: greenrt :: Builder :: new () . workers (2usize) . preempt_quantum (:: std :: time :: Duration :: from_millis (1u64))",
            "block_on (move || -> Result < () , E > { Ok (()) })",
        ] {
            assert!(out.contains(want), "{want}\nnot in\n{out}");
        }
        let out = attribute(
            Kind::Main,
            quote!(),
            quote!(
                fn main() {}
            ),
        )
        .to_string();
        assert!(!out.contains("test"), "{out}");
        assert!(
            out.contains(":: greenrt :: Builder :: new () . build ()"),
            "{out}"
        );
    }

    #[test]
    fn errors_keep_the_item() {
        let out = attribute(
            Kind::Main,
            quote!(bogus = 1),
            quote!(
                async fn main() {}
            ),
        )
        .to_string();
        assert!(out.contains("unknown argument"), "{out}");
        assert!(out.contains("remove `async`"), "{out}");
        assert!(out.contains("async fn main"), "{out}");
        let out = attribute(
            Kind::Main,
            quote!(),
            quote!(
                struct S;
            ),
        )
        .to_string();
        assert!(
            out.contains("#[greenrt::main] applies to a function"),
            "{out}"
        );
    }
}
