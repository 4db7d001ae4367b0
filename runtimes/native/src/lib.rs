pub use sprout;
