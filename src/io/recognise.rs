//! Recognising greenrt's sockets and files behind the type parameters of
//! [`copy`](super::copy), which need not be `'static`.
//!
//! Rust has no specialisation, and `Any` (so `TypeId::of`) needs
//! `'static` types, which would rule out `copy(&mut &stream, ..)` or
//! `copy(&mut (&mut stream).take(n), ..)`. Lifetimes are erased before
//! code is generated, though, so a `TypeId` can be had for any type with
//! its lifetimes erased: `TypeId::of::<T>()` called through a trait
//! object whose lifetime bound was cast to `'static` (the technique of
//! dtolnay's `typeid` crate). Such an id tells types apart up to their
//! lifetimes. That is exact for types without lifetime parameters
//! ([`Owned`]); for references, `&'a T` is recognised by the id of
//! `&'static T` and only ever read as a `&T` no longer than it is
//! borrowed, never stored into or extended.

use std::any::{Any, TypeId};
use std::borrow::Borrow;
use std::io::{self, Take};
use std::marker::PhantomData;

use crate::splice::Endpoint;

/// `TypeId::of::<T>()` behind an object whose lifetime bound may be cast.
trait ErasedTypeId {
    fn erased_type_id(&self) -> TypeId
    where
        Self: 'static;
}

impl<T: ?Sized> ErasedTypeId for PhantomData<T> {
    fn erased_type_id(&self) -> TypeId
    where
        Self: 'static,
    {
        TypeId::of::<T>()
    }
}

/// The `TypeId` of `T` with every lifetime in it taken as `'static`.
fn erased_type_id<T: ?Sized>() -> TypeId {
    let marker = PhantomData::<T>;
    let object: &dyn ErasedTypeId = &marker;
    // SAFETY: only the object's lifetime bound changes. The method called
    // reads no data (a PhantomData has none) and returns a TypeId, which
    // the compiler computes after erasing lifetimes: it is the same for
    // `T` and for `T` with its lifetimes made 'static. Nothing borrowed
    // is kept beyond this call.
    let object: &(dyn ErasedTypeId + 'static) = unsafe { std::mem::transmute(object) };
    object.erased_type_id()
}

/// Types without lifetime parameters: if the erased id of some `R`
/// equals the id of such a `T`, then `R` is `T`.
///
/// # Safety
///
/// Implement only for types with no lifetime parameters (at any depth).
pub(super) unsafe trait Owned: Any {}

// SAFETY: a type with no lifetime or type parameters.
unsafe impl Owned for crate::net::TcpStream {}
// SAFETY: a type with no lifetime or type parameters.
unsafe impl Owned for crate::os::unix::net::UnixStream {}
// SAFETY: a type with no lifetime or type parameters.
unsafe impl Owned for crate::fs::File {}
// SAFETY: a type with no lifetime or type parameters.
unsafe impl Owned for std::fs::File {}
// SAFETY: Take<F> has no lifetime of its own, and F is Owned.
unsafe impl<F: Owned> Owned for Take<F> {}

/// Is `R` the type `T`?
fn is<T: Owned, R: ?Sized>() -> bool {
    erased_type_id::<R>() == TypeId::of::<T>()
}

/// `r` as a `T`, if `R` is `T`.
pub(super) fn downcast_mut<T: Owned, R>(r: &mut R) -> Option<&mut T> {
    // SAFETY: `T` has no lifetime parameters (`Owned`), so the erased
    // ids being equal means `R` is `T`: the cast is an identity.
    is::<T, R>().then(|| unsafe { &mut *(r as *mut R).cast::<T>() })
}

/// `r` as a shared `T`, if `R` is `T`, `&T` or `&mut T` (with any
/// lifetime).
pub(super) fn deref<T: Owned, R>(r: &R) -> Option<&T> {
    let id = erased_type_id::<R>();
    if id == TypeId::of::<T>() {
        // SAFETY: `R` is `T` (`T` has no lifetime parameters).
        return Some(unsafe { &*(r as *const R).cast::<T>() });
    }
    if id == TypeId::of::<&'static T>() || id == TypeId::of::<&'static mut T>() {
        // SAFETY: `R` is `&'a T` or `&'a mut T` for some 'a, and `r`
        // borrows it, so 'a outlives the borrow: reading it as a `&T`
        // that lives as long as the borrow of `r` is `&**r`. While that
        // shared borrow lasts, a `&mut` behind `r` cannot be used.
        return Some(unsafe { *(r as *const R).cast::<&T>() });
    }
    None
}

/// `r` as a `&mut Take<&T>` or `&mut Take<&mut T>` (the inner reference
/// shortened to the borrow of `r`), through `with`, if `R` is such a
/// `Take`; `with` gets the `Take` only as a [`TakeOf`], which can read
/// and set its limit and read its inner value, never replace it.
pub(super) fn take_of_ref<T: Owned, R, O>(
    r: &mut R,
    with: impl FnOnce(&mut dyn TakeOf<T>) -> O,
) -> Option<O> {
    let id = erased_type_id::<R>();
    if id == TypeId::of::<Take<&'static T>>() {
        // SAFETY: `R` is `Take<&'a T>` for an 'a that outlives the borrow
        // of `r`. The `Take` is handed on as a `TakeOf`, whose methods
        // never store a reference into it, so shortening the inner
        // reference's lifetime cannot let a shorter-lived one in.
        let t = unsafe { &mut *(r as *mut R).cast::<Take<&T>>() };
        return Some(with(t));
    }
    if id == TypeId::of::<Take<&'static mut T>>() {
        // SAFETY: as above, for `Take<&'a mut T>`.
        let t = unsafe { &mut *(r as *mut R).cast::<Take<&mut T>>() };
        return Some(with(t));
    }
    None
}

/// What a limited copy needs of a `Take` of a `T`, `&T` or `&mut T`.
pub(super) trait TakeOf<T> {
    fn limit(&self) -> u64;
    fn set_limit(&mut self, limit: u64);
    fn inner(&self) -> &T;
}

// One impl for `Take<T>`, `Take<&T>` and `Take<&mut T>`: each of them
// borrows as a `T`.
impl<T, R: Borrow<T>> TakeOf<T> for Take<R> {
    fn limit(&self) -> u64 {
        Take::limit(self)
    }
    fn set_limit(&mut self, limit: u64) {
        Take::set_limit(self, limit)
    }
    fn inner(&self) -> &T {
        self.get_ref().borrow()
    }
}

/// A greenrt stream socket: its endpoint for the copy loops.
pub(super) trait StreamSocket: Owned {
    fn endpoint(&self) -> io::Result<Endpoint<'_>>;
}

impl StreamSocket for crate::net::TcpStream {
    fn endpoint(&self) -> io::Result<Endpoint<'_>> {
        Ok(Endpoint::new(
            self.net_fd(),
            self.read_timeout()?,
            self.write_timeout()?,
        ))
    }
}

impl StreamSocket for crate::os::unix::net::UnixStream {
    fn endpoint(&self) -> io::Result<Endpoint<'_>> {
        Ok(Endpoint::new(
            self.net_fd(),
            self.read_timeout()?,
            self.write_timeout()?,
        ))
    }
}

/// The endpoint `x` is, if it is a greenrt stream socket or a reference
/// to one.
pub(super) fn endpoint<R>(x: &R) -> io::Result<Option<Endpoint<'_>>> {
    if let Some(s) = deref::<crate::net::TcpStream, R>(x) {
        return s.endpoint().map(Some);
    }
    if let Some(s) = deref::<crate::os::unix::net::UnixStream, R>(x) {
        return s.endpoint().map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TcpStream;
    use std::io::{BufReader, Read};

    /// Lifetimes are erased; everything else still tells types apart.
    #[test]
    fn erased_ids_ignore_lifetimes_only() {
        fn id_of_ref<'a>(_: &'a u8) -> TypeId {
            erased_type_id::<&'a TcpStream>()
        }
        assert_eq!(id_of_ref(&0), TypeId::of::<&'static TcpStream>());
        assert_ne!(
            erased_type_id::<&TcpStream>(),
            TypeId::of::<&'static mut TcpStream>()
        );
        assert!(is::<TcpStream, TcpStream>());
        assert!(!is::<TcpStream, BufReader<TcpStream>>());
        assert!(!is::<TcpStream, Box<TcpStream>>());
        assert!(!is::<Take<TcpStream>, TcpStream>());
    }

    /// `deref` and `take_of_ref` recognise owned values and references,
    /// with any lifetime, and nothing that wraps them.
    #[test]
    fn sockets_are_recognised_owned_and_borrowed() {
        let rt = crate::Builder::new().workers(1).build().unwrap();
        rt.block_on(|| {
            let l = crate::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let fd = s.net_fd() as *const _;
            let same = |t: Option<&TcpStream>| t.map(|t| t.net_fd() as *const _) == Some(fd);
            assert!(same(deref::<TcpStream, _>(&s)));
            assert!(same(deref::<TcpStream, _>(&&s)));
            assert!(same(deref::<TcpStream, _>(&&mut s)));
            assert!(deref::<TcpStream, _>(&BufReader::new(&s)).is_none());
            assert!(deref::<TcpStream, _>(&&&s).is_none());

            let mut t = (&mut s).take(7);
            let got = take_of_ref::<TcpStream, _, _>(&mut t, |t| {
                t.set_limit(t.limit() - 2);
                std::ptr::eq(t.inner().net_fd(), fd)
            });
            assert_eq!((got, t.limit()), (Some(true), 5));
            let mut owned = s.take(3);
            assert!(downcast_mut::<Take<TcpStream>, _>(&mut owned).is_some());
            assert!(take_of_ref::<TcpStream, _, _>(&mut owned, |_| ()).is_none());
        });
    }
}
