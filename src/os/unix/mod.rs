//! Unix-specific networking, mirroring `std::os::unix`.

pub mod net;
