pub enum HashKey {
    ClientIp,
}
