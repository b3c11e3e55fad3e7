import HeraldCore
import HeraldKafka

extension KafkaRecord {
    /// The Herald envelope of a record of the events topic (stream and `herald-*` headers). The one
    /// place where a consumed record's key and headers are read; everything that decodes a record
    /// (live delivery, replay) goes through here.
    func heraldEnvelope() throws(HeraldRecordError) -> HeraldRecord {
        try HeraldRecord.decode(key: key, headers: headers.lazy.map { HeraldHeader(name: $0.name, value: $0.value ?? []) })
    }
}
