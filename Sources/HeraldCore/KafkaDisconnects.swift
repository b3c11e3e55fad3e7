// Entries of the `Disconnect` catalogue for Kafka-side faults. They belong in Disconnect.swift with the
// others; they sit here only because that file was being rewritten when they were added.
extension Disconnect {
    /// The live consumer found records of a partition deleted by retention before it read them: the
    /// client resumes, and is told `recovered:false, reason:"expired"`.
    public static let recordsExpiredUnread = Disconnect(.restarting, "messages expired in Kafka before this node delivered them; reconnect and resume")
    /// A partition's log now ends before this node's position (truncated, or the topic recreated).
    public static let logCutShort = Disconnect(.restarting, "the Kafka log was cut short; reconnect and resume")
}
