import Foundation
import HeraldCore
public import HeraldKafka
import NIOCore

/// Sends what clients `publish` to the upstream topic, for the business services behind Herald
/// (docs/protocol.md §2): key = the user id, headers naming the session, device and node. With `sync` the
/// same payload first goes to the user's own stream on the events topic, excluding the sender's
/// session, so the user's other devices receive it.
public struct UpstreamPublisher: Sendable {
    let producer: KafkaProducer
    let upstreamTopic: String
    let eventsTopic: String
    let nodeID: String

    public init(producer: KafkaProducer, upstreamTopic: String, eventsTopic: String, nodeID: String) {
        self.producer = producer
        self.upstreamTopic = upstreamTopic
        self.eventsTopic = eventsTopic
        self.nodeID = nodeID
    }

    /// Produces the records and waits for Kafka's acknowledgement: with `sync`, the offset the copy
    /// took in the user's stream; else the error of the first that failed. `clientID`, the client's
    /// own id for the publish, is the records' `herald-id` when given.
    func publish(_ data: [UInt8], sync: Bool, clientID: String?, user: String, device: String?, session: String) async -> Result<Int64?, KafkaError> {
        let id = clientID ?? UUID().uuidString.lowercased()
        let key = Array(user.utf8)
        let value = ByteBuffer(bytes: data)
        var upstreamHeaders = [
            KafkaHeader(name: HeraldHeader.id, value: Array(id.utf8)),
            KafkaHeader(name: HeraldHeader.contentType, value: Array(HeraldContentType.json.rawValue.utf8)),
            KafkaHeader(name: HeraldHeader.session, value: Array(session.utf8)),
            KafkaHeader(name: HeraldHeader.node, value: Array(nodeID.utf8)),
        ]
        if let device { upstreamHeaders.append(KafkaHeader(name: HeraldHeader.device, value: Array(device.utf8))) }
        var synced: Int64? = nil
        if sync {
            // The user's stream first, alone: if it fails, nothing was sent upstream either. Once it
            // landed, a failure of the upstream write makes the client send the publish again, and
            // that second copy in the user's stream has the same herald-id: the nodes drop it
            // (`RepeatedMessages`), so the other devices receive the message once.
            let envelope = HeraldRecord(stream: .user(user), id: id, contentType: .json, exclude: session)
            let copy = KafkaOutgoingRecord(
                topic: eventsTopic, key: key, value: value, headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            )
            switch await producer.send([copy])[0] {
            case .failure(let error): return .failure(error)
            case .success(let delivery): synced = delivery.offset
            }
        }
        let record = KafkaOutgoingRecord(topic: upstreamTopic, key: key, value: value, headers: upstreamHeaders)
        if case .failure(let error) = await producer.send([record])[0] { return .failure(error) }
        return .success(synced)
    }
}
