//! Unit tests of the R2 store and its answers.
