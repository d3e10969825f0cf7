//! bramble-nfs (in progress)
