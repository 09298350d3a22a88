//! `#[kafka_rpc::service]`: a service written once as a Rust trait, served and called with
//! types. Use it through `kafka_rpc::service` (the generated code names `::kafka_rpc`); the
//! documentation of what it generates is there.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType, Signature,
    Token, TraitItem, TraitItemFn, Type,
};

/// See `kafka_rpc::service`.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The attribute's arguments: `name = "..."` or nothing.
struct Args {
    name: Option<LitStr>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut name = None;
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            if key != "name" {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown argument `{key}`: #[kafka_rpc::service] takes only \
                         `name = \"...\"` (the service name, the trait's name by default)"
                    ),
                ));
            }
            input.parse::<Token![=]>()?;
            if name.is_some() {
                return Err(syn::Error::new(key.span(), "`name` is given twice"));
            }
            name = Some(input.parse::<LitStr>()?);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(Args { name })
    }
}

/// What a method gives back.
enum Output {
    /// `T` (or nothing, `()`): the call resolves to `Result<T, RpcError>`.
    Value(Type),
    /// `Result<T, E>`: `E` is the method's own error type.
    Fallible(Type, Box<Type>),
}

/// One method of the service.
struct Method {
    sig: Signature,
    attrs: Vec<syn::Attribute>,
    /// The name on the wire.
    wire_name: String,
    /// The wire parameters, in order: name and type.
    params: Vec<(Ident, Type)>,
    /// Where the request context goes among the Rust arguments (not on the wire), and whether
    /// it is taken by reference.
    context_at: Option<(usize, bool)>,
    output: Output,
    /// The declared result type (`()` when none).
    result: Type,
}

fn error(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

/// A legal service name: what a topic name derived from it allows (wire/WIRE.md "Topics").
fn check_service_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "service name {name:?} must be 1 to 200 characters of A-Z a-z 0-9 _ - \
             (and `.` for a Python kafka-rpc 1.0.8 service): it becomes part of topic names"
        ))
    }
}

/// The last path segment's name of a type, if it is a path.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

/// Whether `ty` is the request context, `&RequestContext` or `RequestContext` (any path ending
/// in `RequestContext`): `Some(by_reference)`.
fn context_kind(ty: &Type) -> Option<bool> {
    let named = |t: &Type| last_segment(t).is_some_and(|s| s.ident == "RequestContext");
    match ty {
        Type::Reference(r) if r.mutability.is_none() && named(&r.elem) => Some(true),
        t if named(t) => Some(false),
        _ => None,
    }
}

/// Refuses types that cannot be decoded from a request or encoded into a reply as they are.
fn check_owned(ty: &Type, what: &str) -> syn::Result<()> {
    match ty {
        Type::Reference(_) => Err(error(
            ty.span(),
            format!(
                "{what} must be an owned type: it is decoded from (or encoded into) a Kafka \
                 record; use `String` for `&str`, `Vec<T>` for `&[T]` (only the request \
                 context may be borrowed: `ctx: &RequestContext`)"
            ),
        )),
        Type::ImplTrait(_) => Err(error(
            ty.span(),
            format!(
                "{what} cannot be `impl Trait`: the type on the wire must be known to decode it"
            ),
        )),
        Type::Infer(_) | Type::Never(_) | Type::TraitObject(_) | Type::BareFn(_) => Err(error(
            ty.span(),
            format!("{what} must be a type that serde can encode and decode"),
        )),
        _ => Ok(()),
    }
}

/// `Result<T, E>` (any path ending in `Result` with two type arguments) as `(T, E)`.
fn as_result(ty: &Type) -> Option<(Type, Type)> {
    let seg = last_segment(ty)?;
    if seg.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(t), Some(e), None) => Some((t, e)),
        _ => None,
    }
}

fn parse_method(m: &TraitItemFn) -> syn::Result<Method> {
    let sig = &m.sig;
    let name = &sig.ident;
    if let Some(body) = &m.default {
        return Err(error(
            body.span(),
            format!("service method `{name}` cannot have a default body: write it in the `impl`"),
        ));
    }
    if sig.asyncness.is_none() {
        return Err(error(
            sig.fn_token.span(),
            format!(
                "service method `{name}` must be an `async fn`: the server runs each call as a \
                 task and the typed client awaits its reply"
            ),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(error(
            sig.generics.span(),
            format!(
                "service method `{name}` cannot be generic (nor have lifetimes or a where \
                 clause): its argument and result types must be known to decode them"
            ),
        ));
    }
    if let Some(c) = &sig.constness {
        return Err(error(c.span(), "a service method cannot be `const`"));
    }
    if let Some(u) = &sig.unsafety {
        return Err(error(u.span(), "a service method cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        return Err(error(abi.span(), "a service method cannot declare an ABI"));
    }
    if let Some(v) = &sig.variadic {
        return Err(error(v.span(), "a service method cannot be variadic"));
    }
    if ["new", "with_options", "client"].contains(&name.to_string().as_str()) {
        return Err(error(
            name.span(),
            format!(
                "a service method cannot be called `{name}`: the generated client has a method \
                 of that name (`new`, `with_options` and `client` are taken)"
            ),
        ));
    }
    let self_message = format!(
        "service method `{name}` must take `&self`: the server calls the methods of one shared \
         instance of the service concurrently"
    );
    match sig.inputs.first() {
        Some(FnArg::Receiver(r))
            if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {}
        Some(FnArg::Receiver(r)) => return Err(error(r.span(), self_message)),
        _ => return Err(error(sig.ident.span(), self_message)),
    }
    let mut params = Vec::new();
    let mut context_at = None;
    for (i, arg) in sig.inputs.iter().skip(1).enumerate() {
        let FnArg::Typed(pt) = arg else {
            unreachable!("only the first argument can be a receiver");
        };
        if let Some(by_reference) = context_kind(&pt.ty) {
            if context_at.is_some() {
                return Err(error(
                    pt.span(),
                    format!("service method `{name}` takes the request context twice"),
                ));
            }
            context_at = Some((i, by_reference));
            continue;
        }
        let Pat::Ident(pi) = &*pt.pat else {
            return Err(error(
                pt.pat.span(),
                format!(
                    "the parameters of service method `{name}` need plain names: they are the \
                     keyword argument names on the wire (Python kafka-rpc 1.0.8 callers)"
                ),
            ));
        };
        if pi.by_ref.is_some() || pi.subpat.is_some() {
            return Err(error(
                pt.pat.span(),
                "a service method's parameter must be a plain name",
            ));
        }
        check_owned(&pt.ty, &format!("parameter `{}` of `{name}`", pi.ident))?;
        params.push((pi.ident.clone(), (*pt.ty).clone()));
    }
    let (output, result) = match &sig.output {
        ReturnType::Default => (Output::Value(syn::parse_quote!(())), syn::parse_quote!(())),
        ReturnType::Type(_, ty) => {
            let what = format!("the result of `{name}`");
            match as_result(ty) {
                Some((t, e)) => {
                    check_owned(&t, &what)?;
                    check_owned(&e, &format!("the error type of `{name}`"))?;
                    (Output::Fallible(t, Box::new(e)), (**ty).clone())
                }
                None => {
                    check_owned(ty, &what)?;
                    (Output::Value((**ty).clone()), (**ty).clone())
                }
            }
        }
    };
    let wire_name = name.to_string();
    let wire_name = wire_name
        .strip_prefix("r#")
        .unwrap_or(&wire_name)
        .to_string();
    Ok(Method {
        sig: sig.clone(),
        attrs: m.attrs.clone(),
        wire_name,
        params,
        context_at,
        output,
        result,
    })
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args: Args = syn::parse2(attr)?;
    let tr: ItemTrait = syn::parse2(item)?;
    let trait_name = &tr.ident;
    if !tr.generics.params.is_empty() || tr.generics.where_clause.is_some() {
        return Err(error(
            tr.generics.span(),
            "a service trait cannot be generic: its methods' types must be known to decode them",
        ));
    }
    if let Some(u) = &tr.unsafety {
        return Err(error(u.span(), "a service trait cannot be `unsafe`"));
    }
    if let Some(a) = &tr.auto_token {
        return Err(error(a.span(), "a service trait cannot be an auto trait"));
    }
    if !tr.supertraits.is_empty() {
        return Err(error(
            tr.supertraits.span(),
            "a service trait cannot have supertraits (the macro makes it `Send + Sync + 'static`, \
             as a server shares one instance between its tasks)",
        ));
    }
    let service_name = match &args.name {
        Some(lit) => {
            let name = lit.value();
            check_service_name(&name).map_err(|m| error(lit.span(), m))?;
            name
        }
        None => {
            let name = trait_name.to_string();
            let name = name.strip_prefix("r#").unwrap_or(&name).to_string();
            check_service_name(&name).map_err(|m| error(trait_name.span(), m))?;
            name
        }
    };
    let mut methods = Vec::new();
    for item in &tr.items {
        match item {
            TraitItem::Fn(f) => methods.push(parse_method(f)?),
            other => {
                return Err(error(
                    other.span(),
                    "a service trait holds only `async fn` methods (move constants, types and \
                     macros out of it)",
                ))
            }
        }
    }

    let vis = &tr.vis;
    let trait_attrs = &tr.attrs;
    let client_name = format_ident!("{}Client", trait_name);
    let server_name = format_ident!("{}Server", trait_name);

    // The trait: each `async fn` becomes a method returning a `Send` future, so the server can
    // run it as a task; an implementation may still write `async fn`.
    let trait_methods = methods.iter().map(|m| {
        let mut sig = m.sig.clone();
        sig.asyncness = None;
        let result = &m.result;
        sig.output = syn::parse_quote_spanned! {m.sig.output.span()=>
            -> impl ::core::future::Future<Output = #result> + ::core::marker::Send
        };
        let attrs = &m.attrs;
        quote! { #(#attrs)* #sig; }
    });

    // The server side: `Service::call` dispatches on the method name, decodes the arguments'
    // tuple, calls the implementation and encodes its result; the parameter names serve
    // keyword arguments.
    let service_var = Ident::new("service", Span::mixed_site());
    let ctx_var = Ident::new("context", Span::mixed_site());
    let args_var = Ident::new("args", Span::mixed_site());
    let method_var = Ident::new("method", Span::mixed_site());
    let arms = methods.iter().map(|m| {
        let wire_name = &m.wire_name;
        let method = &m.sig.ident;
        let names: Vec<&Ident> = m.params.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = m.params.iter().map(|(_, t)| t).collect();
        let mut call_args: Vec<TokenStream2> = names.iter().map(|n| quote!(#n)).collect();
        if let Some((at, by_reference)) = m.context_at {
            call_args.insert(
                at,
                if by_reference {
                    quote!(&#ctx_var)
                } else {
                    quote!(#ctx_var)
                },
            );
        }
        let invoke = quote! { <S as #trait_name>::#method(&*#service_var, #(#call_args),*).await };
        let body = match &m.output {
            Output::Value(_) => quote! {
                ::kafka_rpc::typed::encode_result(&#invoke)
            },
            Output::Fallible(..) => quote! {
                match #invoke {
                    ::core::result::Result::Ok(value) => ::kafka_rpc::typed::encode_result(&value),
                    ::core::result::Result::Err(error) => ::core::result::Result::Err(
                        ::kafka_rpc::typed::user_error(&error),
                    ),
                }
            },
        };
        let tuple_ty = quote! { (#(#types,)*) };
        let ctx_unused = m
            .context_at
            .is_none()
            .then(|| quote! { let _ = &#ctx_var; });
        quote! {
            #wire_name => ::std::boxed::Box::pin(async move {
                #ctx_unused
                let (#(#names,)*): #tuple_ty = ::kafka_rpc::typed::decode_args(&#args_var)?;
                #body
            }),
        }
    });
    let parameter_arms = methods.iter().map(|m| {
        let wire_name = &m.wire_name;
        let name_strings = m.params.iter().map(|(n, _)| {
            let s = n.to_string();
            s.strip_prefix("r#").unwrap_or(&s).to_string()
        });
        quote! {
            #wire_name => ::core::option::Option::Some(
                ::std::vec![#(::std::string::String::from(#name_strings)),*]
            ),
        }
    });
    // Every parameter and result type must travel: checked here, at its own span, so that a
    // missing serde derive is reported at the type rather than deep in the generated code.
    let type_checks = methods.iter().flat_map(|m| {
        let mut types: Vec<&Type> = m.params.iter().map(|(_, t)| t).collect();
        match &m.output {
            Output::Value(t) => types.push(t),
            Output::Fallible(t, e) => {
                types.push(t);
                types.push(e);
            }
        }
        types
            .into_iter()
            .map(|t| quote_spanned! {t.span()=> ::kafka_rpc::typed::assert_wire_type::<#t>(); })
            .collect::<Vec<_>>()
    });

    // The typed client: one method per service method, returning a `Call` to await.
    let client_methods = methods.iter().map(|m| {
        let method = &m.sig.ident;
        let wire_name = &m.wire_name;
        let names: Vec<&Ident> = m.params.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = m.params.iter().map(|(_, t)| t).collect();
        let returns = match &m.output {
            Output::Value(t) => quote!(::kafka_rpc::typed::Value<#t>),
            Output::Fallible(t, e) => quote!(::kafka_rpc::typed::Fallible<#t, #e>),
        };
        let docs = m.attrs.iter().filter(|a| a.path().is_ident("doc"));
        quote! {
            #(#docs)*
            pub fn #method(&self, #(#names: #types),*)
                -> ::kafka_rpc::typed::Call<(#(#types,)*), #returns>
            {
                ::kafka_rpc::typed::Call::new(
                    ::core::clone::Clone::clone(&self.client),
                    ::core::clone::Clone::clone(&self.options),
                    #service_name,
                    #wire_name,
                    (#(#names,)*),
                )
            }
        }
    });

    let client_doc = format!(
        "The typed client of the service `{service_name}` (generated from the trait \
         [`{trait_name}`] by `#[kafka_rpc::service]`): each method returns a \
         [`Call`](::kafka_rpc::typed::Call) to set per-call options on and `.await`."
    );
    let server_doc = format!(
        "The server side of the service `{service_name}`: an implementation of [`{trait_name}`] \
         as a [`Service`](::kafka_rpc::Service) that a [`Server`](::kafka_rpc::Server) serves \
         ([`Server::service`](::kafka_rpc::Server::service)); each method under its name, with \
         its parameter names for the keyword arguments of Python kafka-rpc 1.0.8 callers."
    );

    Ok(quote! {
        #(#trait_attrs)*
        #vis trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#trait_methods)*
        }

        #[doc = #client_doc]
        #[derive(Clone)]
        #vis struct #client_name {
            client: ::kafka_rpc::RpcClient,
            options: ::kafka_rpc::CallOptions,
        }

        impl #client_name {
            /// The service's name on the wire (its topics and consumer group derive from it).
            pub const SERVICE: &'static str = #service_name;

            /// A typed client calling through `client`.
            pub fn new(client: ::kafka_rpc::RpcClient) -> Self {
                Self { client, options: ::core::default::Default::default() }
            }

            /// The options every call of this client starts from (each call may change them).
            pub fn with_options(mut self, options: ::kafka_rpc::CallOptions) -> Self {
                self.options = options;
                self
            }

            /// The untyped client underneath.
            pub fn client(&self) -> &::kafka_rpc::RpcClient {
                &self.client
            }

            #(#client_methods)*
        }

        #[doc = #server_doc]
        #vis struct #server_name<S> {
            service: ::std::sync::Arc<S>,
        }

        impl<S> ::core::clone::Clone for #server_name<S> {
            fn clone(&self) -> Self {
                Self { service: ::std::sync::Arc::clone(&self.service) }
            }
        }

        impl<S: #trait_name> #server_name<S> {
            /// The service's name on the wire (its topics and consumer group derive from it).
            pub const SERVICE: &'static str = #service_name;

            /// Serves `service`.
            pub fn new(service: S) -> Self {
                Self { service: ::std::sync::Arc::new(service) }
            }

            /// Serves a `service` shared with other owners.
            pub fn from_arc(service: ::std::sync::Arc<S>) -> Self {
                Self { service }
            }

            /// Server options for this service: its name set, every other setting the default.
            pub fn options() -> ::kafka_rpc::ServerOptions {
                ::kafka_rpc::ServerOptions::new(#service_name)
            }
        }

        impl<S: #trait_name> ::kafka_rpc::Service for #server_name<S> {
            fn call(
                &self,
                #ctx_var: ::kafka_rpc::RequestContext,
                #method_var: &str,
                #args_var: ::kafka_rpc::typed::Bytes,
            ) -> ::kafka_rpc::ServiceFuture {
                let #service_var = ::std::sync::Arc::clone(&self.service);
                match #method_var {
                    #(#arms)*
                    _ => {
                        let error = ::kafka_rpc::HandlerError::unimplemented(#method_var);
                        ::std::boxed::Box::pin(async move { ::core::result::Result::Err(error) })
                    }
                }
            }

            fn parameters(
                &self,
                #method_var: &str,
            ) -> ::core::option::Option<::std::vec::Vec<::std::string::String>> {
                match #method_var {
                    #(#parameter_arms)*
                    _ => ::core::option::Option::None,
                }
            }

            fn name(&self) -> ::core::option::Option<&str> {
                ::core::option::Option::Some(#service_name)
            }
        }

        const _: () = {
            #[allow(dead_code)]
            fn wire_types() {
                #(#type_checks)*
            }
        };
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(attr: &str, item: &str) -> String {
        expand(attr.parse().unwrap(), item.parse().unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn names_on_the_wire_come_from_the_trait() {
        let out = expanded(
            "",
            "pub trait Sum { async fn add(&self, a: i64, r#type: i64) -> i64; \
             async fn ping(&self, ctx: &RequestContext); }",
        );
        // Method names, parameter names (a raw identifier without its `r#`), service name.
        assert!(
            out.contains(r#""add" => :: core :: option :: Option :: Some"#),
            "{out}"
        );
        assert!(
            out.contains(r#":: std :: string :: String :: from ("a") , :: std :: string :: String :: from ("type")"#),
            "{out}"
        );
        assert!(
            out.contains(r#"pub const SERVICE : & 'static str = "Sum""#),
            "{out}"
        );
        // The context is no wire parameter: `ping` has none.
        assert!(
            out.contains(r#""ping" => :: core :: option :: Option :: Some (:: std :: vec ! [])"#),
            "{out}"
        );
        let renamed = expanded(
            r#"name = "sum-v2""#,
            "trait Sum { async fn add(&self, a: i64) -> i64; }",
        );
        assert!(renamed.contains(r#"= "sum-v2""#), "{renamed}");
    }

    #[test]
    fn result_types_are_recognised_by_name() {
        let ty: Type = syn::parse_quote!(std::result::Result<u8, MyError>);
        assert!(as_result(&ty).is_some());
        let ty: Type = syn::parse_quote!(io::Result<u8>);
        assert!(as_result(&ty).is_none(), "one argument: a plain value");
        assert_eq!(
            context_kind(&syn::parse_quote!(&kafka_rpc::RequestContext)),
            Some(true)
        );
        assert_eq!(
            context_kind(&syn::parse_quote!(RequestContext)),
            Some(false)
        );
        assert_eq!(context_kind(&syn::parse_quote!(&mut RequestContext)), None);
    }
}
