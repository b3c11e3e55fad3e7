internal import CKafka
import Logging
import Synchronization

/// Owns one `rd_kafka_t` handle and the blocking metadata queries every role needs.
///
/// Every method here may block for up to its timeout: callers run them on their own threads
/// (`BlockingWorker`, a poll thread), never on an event loop or the cooperative pool.
final class RDKafkaClient: Sendable {
    enum Kind { case producer, consumer }

    // The handle is created in init and destroyed once in `destroy()`; librdkafka's API is
    // thread-safe for every call we make on it. `handle` itself never changes.
    nonisolated(unsafe) let handle: OpaquePointer
    let context: Unmanaged<ClientContext>
    private let destroyed = Atomic<Bool>(false)

    init(
        kind: Kind,
        properties: [String: String],
        logger: Logger,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(.configuration, "librdkafka could not allocate a configuration")
        }
        var errorText = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errorText, errorText.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                // librdkafka's text quotes the value it refused: not when the value is a credential.
                let text = KafkaConfiguration.isSensitive(key: key) ? "librdkafka refused its value" : String(cBuffer: errorText)
                throw KafkaError(.configuration, "property \(key): \(text)")
            }
        }
        let context = Unmanaged.passRetained(ClientContext(logger: logger))
        rd_kafka_conf_set_opaque(conf, context.toOpaque())
        rd_kafka_conf_set_log_cb(conf, rdKafkaLogCallback)
        rd_kafka_conf_set_error_cb(conf, rdKafkaErrorCallback)
        configure(conf)

        let type = kind == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER
        // On success rd_kafka_new takes ownership of conf; on failure it is still ours.
        guard let handle = rd_kafka_new(type, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            context.release()
            throw KafkaError(.clientCreation, String(cBuffer: errorText))
        }
        self.handle = handle
        self.context = context
    }

    /// Destroys the handle. Blocks until librdkafka's threads have stopped.
    func destroy() {
        guard !destroyed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        rd_kafka_destroy(handle)
        context.release()
    }

    var isDestroyed: Bool { destroyed.load(ordering: .acquiring) }

    /// The number of partitions of `topic`, or `nil` when the cluster does not know the topic.
    ///
    /// Asking a broker about one named topic may make it auto-create the topic with its defaults (the
    /// mock cluster does, whatever `allow.auto.create.topics` says), so whether a topic exists is asked
    /// with an all-topics request; `knownToExist` allows the cheaper one-topic request.
    func partitionCount(topic: String, timeoutMs: Int32, knownToExist: Bool = false) throws(KafkaError) -> Int32? {
        var rkt: OpaquePointer? = nil
        if knownToExist {
            guard let opened = rd_kafka_topic_new(handle, topic, nil) else {
                throw KafkaError(.unknownTopicOrPartition, "cannot open topic \(topic)")
            }
            rkt = opened
        }
        defer { if let rkt { rd_kafka_topic_destroy(rkt) } }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, rkt == nil ? 1 : 0, rkt, &metadata, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(err == RD_KAFKA_RESP_ERR__TIMED_OUT ? .timedOut : .admin, "metadata for \(topic)", err)
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let entry = metadata.pointee.topics[index]
            guard String(cString: entry.topic) == topic else { continue }
            if entry.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART { return nil }
            if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(.admin, "metadata for \(topic)", entry.err)
            }
            return entry.partition_cnt
        }
        return nil
    }

    /// The topics this client already holds metadata for (librdkafka's locally known topics): those it
    /// produced to or was asked about.
    func locallyKnownTopics(timeoutMs: Int32) throws(KafkaError) -> [String] {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, nil, &metadata, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(err == RD_KAFKA_RESP_ERR__TIMED_OUT ? .timedOut : .admin, "metadata for the known topics", err)
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        return (0..<Int(metadata.pointee.topic_cnt)).map { String(cString: metadata.pointee.topics[$0].topic) }
    }

    /// The low watermark (first offset still kept) and high watermark (next offset to be written).
    func watermarks(topic: String, partition: Int32, timeoutMs: Int32) throws(KafkaError) -> (low: Int64, high: Int64) {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(handle, topic, partition, &low, &high, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let code: KafkaError.Code = switch err {
            case RD_KAFKA_RESP_ERR__TIMED_OUT: .timedOut
            case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
                 RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC: .unknownTopicOrPartition
            default: .admin
            }
            throw KafkaError(code, "watermarks of \(topic)[\(partition)]", err)
        }
        return (low, high)
    }

    func clusterID(timeoutMs: Int32) throws(KafkaError) -> String {
        guard let raw = rd_kafka_clusterid(handle, timeoutMs) else {
            throw KafkaError(.timedOut, "the cluster did not tell its id within \(timeoutMs) ms")
        }
        defer { rd_kafka_mem_free(handle, raw) }
        return String(cString: raw)
    }
}

/// What librdkafka's callbacks reach through `rd_kafka_opaque()`.
final class ClientContext: Sendable {
    let logger: Logger
    init(logger: Logger) { self.logger = logger }

    static func from(_ rk: OpaquePointer?) -> ClientContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

// C callbacks are global functions: a closure at top level of an executable is taken as main-actor
// code and traps when librdkafka calls it from its own threads (a measured fact of this toolchain).
private func rdKafkaLogCallback(rk: OpaquePointer?, level: Int32, facility: UnsafePointer<CChar>?, buffer: UnsafePointer<CChar>?) {
    guard let context = ClientContext.from(rk) else { return }
    let facility = facility.map { String(cString: $0) } ?? "?"
    let text = buffer.map { String(cString: $0) } ?? ""
    // syslog levels: 0-3 error, 4 warning, 5-6 notice/info, 7 debug.
    let swiftLevel: Logger.Level = switch level {
    case ...3: .error
    case 4: .warning
    case 5, 6: .info
    default: .debug
    }
    context.logger.log(level: swiftLevel, "\(text)", metadata: ["kafka.facility": "\(facility)"])
}

private func rdKafkaErrorCallback(rk: OpaquePointer?, err: Int32, reason: UnsafePointer<CChar>?, opaque: UnsafeMutableRawPointer?) {
    guard let context = ClientContext.from(rk) else { return }
    let code = rd_kafka_resp_err_t(rawValue: err)
    let name = String(cString: rd_kafka_err2name(code))
    let reason = reason.map { String(cString: $0) } ?? ""
    context.logger.warning("\(reason)", metadata: ["kafka.error": "\(name)"])
}

extension String {
    /// Reads a NUL-terminated C string that librdkafka wrote into a buffer of ours.
    init(cBuffer: [CChar]) {
        self.init(decoding: cBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
