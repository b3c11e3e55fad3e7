/// A cursor as the `id:` of a Server-Sent Event, which the browser sends back as `Last-Event-ID` when it
/// reconnects. One field must carry what a WebSocket resume carries in two query parameters (`cursor`
/// and `epoch`), because an `EventSource` reconnects to the same URL: `EPOCH CURSOR`, split at the first
/// space (an epoch has none; docs/protocol.md "Server-Sent Events").
extension ResumeCursor {
    public func eventID(epoch: String) -> String {
        epoch + " " + text
    }

    /// The epoch and the cursor text of an event id; nil if it has no space or either part is empty.
    public static func parts(ofEventID id: String) -> (epoch: String, cursor: String)? {
        guard let space = id.firstIndex(of: " ") else { return nil }
        let epoch = id[..<space]
        let cursor = id[id.index(after: space)...]
        guard !epoch.isEmpty, !cursor.isEmpty else { return nil }
        return (String(epoch), String(cursor))
    }
}
