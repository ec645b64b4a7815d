pub struct Config;
// crate::State in a comment is not an edge.
#[cfg(test)]
mod tests {
    use crate::State;
}
