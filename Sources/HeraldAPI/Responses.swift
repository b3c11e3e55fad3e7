import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The control plane's answers as `Codable` values (docs/openapi.yaml names each shape); only the
/// delivery path writes JSON by hand.
enum Responses {
    struct Status: Encodable {
        var status: String
    }

    struct Batch: Encodable {
        var results: [PushOutcome]
    }

    /// `GET /v1/presence`: each user asked about, online or not; `scope` says whether the answer is
    /// the cluster's (`cluster`) or this node's alone (`node`: it has no sessions topic).
    struct PresenceAnswer: Encodable {
        var node: String
        var scope: String
        var users: [User]

        struct User: Encodable {
            var user: String
            var online: Bool
        }
    }

    struct UserConnections: Encodable {
        var node: String
        var user: String
        var connections: [Session]

        struct Session: Encodable {
            var node: String
            var session: String
            var device: String?
            var openedAt: Int64

            enum CodingKeys: String, CodingKey {
                case node, session, device
                case openedAt = "opened_at"
            }

            // `device` is null, not absent, for a connection without one.
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(node, forKey: .node)
                try container.encode(session, forKey: .session)
                try container.encode(device, forKey: .device)
                try container.encode(openedAt, forKey: .openedAt)
            }
        }
    }

    struct Kick: Encodable {
        var user: String
        var connectionsHere: Int
        var revokedBefore: Int64?
        var partition: Int32
        var offset: Int64

        enum CodingKeys: String, CodingKey {
            case user, partition, offset
            case connectionsHere = "connections_here"
            case revokedBefore = "revoked_before"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(user, forKey: .user)
            try container.encode(connectionsHere, forKey: .connectionsHere)
            try container.encode(revokedBefore, forKey: .revokedBefore)
            try container.encode(partition, forKey: .partition)
            try container.encode(offset, forKey: .offset)
        }
    }

    struct Failure: Encodable {
        var error: Detail

        struct Detail: Encodable {
            var code: String
            var message: String
        }
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        // Sorted: the same answer is the same bytes (an idempotent retry compares equal).
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func body(_ value: some Encodable) -> ByteBuffer {
        // Every shape here is plain strings and numbers: encoding cannot fail.
        let data: Data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: body(value)))
    }
}
