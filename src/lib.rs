pub mod pyregex;
pub mod yaml;
