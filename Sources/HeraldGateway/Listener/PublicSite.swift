import HeraldCore

/// What the public port's plain HTTP pages need: the origin allow-list for the client files, and in
/// development mode the demo's tools and a way to restart a user's connections. Plugged in from
/// outside the data plane.
struct PublicSite: Sendable {
    var allowedOrigins: Set<String>
    var developmentTools: DevelopmentTools?
    /// Closes every connection of a user on this node; returns how many.
    var closeConnections: @Sendable (_ user: String, _ disconnect: Disconnect) -> Int
}
