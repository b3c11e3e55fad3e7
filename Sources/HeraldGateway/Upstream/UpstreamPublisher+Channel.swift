import Foundation
import HeraldCore
import HeraldKafka
import NIOCore

extension UpstreamPublisher {
    /// A client's publish into a channel: first to the channel's stream on the events topic (every node
    /// delivers it to the channel's viewers, and it is part of the channel's history), with `herald-user`
    /// naming the publisher; then to the upstream topic with `herald-channel`, so a business service can
    /// moderate or store it. Returns the offset the message took in the channel's stream.
    ///
    /// The channel's copy goes first, alone: if it fails, nothing went upstream either. If the upstream
    /// write fails after it landed, the client sends the publish again, and the channel then holds two
    /// copies with the same `herald-id` (the message frame's `id`): viewers drop the second by its id.
    /// (`RepeatedPublishes` drops repeats in a user's own stream only.)
    func publish(
        _ data: [UInt8], toChannel channel: String, clientID: String?, user: String?, device: String?, session: String
    ) async -> Result<Int64?, KafkaError> {
        let id = clientID ?? UUID().uuidString.lowercased()
        let value = ByteBuffer(bytes: data)
        let envelope = HeraldRecord(stream: .channel(channel), id: id, contentType: .json, user: user)
        let copy = KafkaOutgoingRecord(
            topic: eventsTopic, key: Array(envelope.key.utf8), value: value,
            headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
        )
        let offset: Int64
        switch await producer.send([copy])[0] {
        case .failure(let error): return .failure(error)
        case .success(let delivery): offset = delivery.offset
        }
        var headers = [
            KafkaHeader(name: HeraldHeader.id, value: Array(id.utf8)),
            KafkaHeader(name: HeraldHeader.contentType, value: Array(HeraldContentType.json.rawValue.utf8)),
            KafkaHeader(name: HeraldHeader.channel, value: Array(channel.utf8)),
            KafkaHeader(name: HeraldHeader.session, value: Array(session.utf8)),
            KafkaHeader(name: HeraldHeader.node, value: Array(nodeID.utf8)),
        ]
        if let user { headers.append(KafkaHeader(name: HeraldHeader.user, value: Array(user.utf8))) }
        if let device { headers.append(KafkaHeader(name: HeraldHeader.device, value: Array(device.utf8))) }
        // Keyed by the channel, so one channel's messages stay in order for the service that reads them.
        let record = KafkaOutgoingRecord(topic: upstreamTopic, key: Array(channel.utf8), value: value, headers: headers)
        if case .failure(let error) = await producer.send([record])[0] { return .failure(error) }
        return .success(offset)
    }
}
