import Foundation
import HeraldCore
import HeraldKafka
import Logging
import NIOCore
import NIOPosix

/// How a broadcast bench round sends its one broadcast: through the node's HTTP API, as a business
/// service does, or straight to the events topic. Either way `send` returns once the push was accepted
/// (202, or Kafka's acknowledgement); the round's clock starts before it.
enum BroadcastSender: Sendable {
    case http(HTTPLoadConnection, key: String, group: MultiThreadedEventLoopGroup)
    case kafka(KafkaProducer, topic: String)

    static func http(host: String, port: Int, key: String) async throws -> BroadcastSender {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        return .http(try await HTTPLoadConnection.connect(host: host, port: port, group: group), key: key, group: group)
    }

    static func kafka(brokers: String, topic: String) async throws -> BroadcastSender {
        var logger = Logger(label: "herald.bench")
        logger.logLevel = .error
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: brokers, clientID: "herald-bench")),
            logger: logger
        )
        return .kafka(producer, topic: topic)
    }

    /// `payload` is JSON text.
    func send(payload: String, id: String) async throws {
        switch self {
        case .http(let connection, let key, _):
            let body = #"{"to":{"all":true},"id":"\#(id)","data":\#(payload)}"#
            let request = ByteBuffer(string: "POST /v1/push HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let (status, answer) = try await connection.send(request)
            guard status == 202 else { throw BenchError("the push API answered \(status): \(answer)") }
        case .kafka(let producer, let topic):
            let record = HeraldRecord(stream: .broadcast, id: id)
            _ = try await producer.send(KafkaOutgoingRecord(
                topic: topic, key: Array(record.key.utf8), value: ByteBuffer(string: payload),
                headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            ))
        }
    }

    func shutdown() async {
        switch self {
        case .http(let connection, _, let group):
            connection.close()
            try? await group.shutdownGracefully()
        case .kafka(let producer, _):
            await producer.shutdown()
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
