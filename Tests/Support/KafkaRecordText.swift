public import HeraldKafka
import NIOCore

extension KafkaRecord {
    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    public var valueString: String { String(buffer: value) }
    public func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
    }
}
