//! OS-specific networking, mirroring `std::os`.

pub mod unix;
