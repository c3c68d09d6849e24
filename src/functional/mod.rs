//! The functional executor (in progress).
