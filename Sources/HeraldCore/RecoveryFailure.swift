/// Why a resume was not recovered (`welcome.recovered:false`, docs/protocol.md §4). Nothing is replayed
/// then: the client resynchronises from its business system and continues live from `positions`.
public enum RecoveryFailure: String, Sendable, Hashable, CaseIterable {
    /// The cursor's offset is older than what Kafka (and this node's hot window) still keeps.
    case expired
    /// The cursor's offset is beyond the end of the log.
    case ahead
    /// The cursor belongs to another cluster, or to a topic whose partition count changed.
    case epoch
    /// More messages to replay than the replay limit.
    case tooMany = "too-many"
    /// The cursor could not be parsed.
    case malformed
}
