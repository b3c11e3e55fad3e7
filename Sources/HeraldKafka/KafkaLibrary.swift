internal import CKafka

/// The librdkafka this process is linked against, for `herald --version` and `herald_build_info`:
/// the version that runs, not the headers it was built with (a container image may carry another).
public enum KafkaLibrary {
    public static var version: String { String(cString: rd_kafka_version_str()) }
}
