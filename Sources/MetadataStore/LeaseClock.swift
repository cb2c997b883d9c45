/// Monotonic time on which `LocalMetadataStore` lapses leases: the time since an arbitrary origin. The broker uses
/// `continuous`; a test passes a clock it moves by hand. A plain value; thread-safe.
public struct LeaseClock: Sendable {
    /// The time now, since this clock's origin; never goes backwards.
    public let now: @Sendable () -> Duration

    public init(now: @escaping @Sendable () -> Duration) {
        self.now = now
    }

    /// `ContinuousClock`, from the moment the clock is made.
    public static var continuous: LeaseClock {
        let origin = ContinuousClock.now
        return LeaseClock { ContinuousClock.now - origin }
    }
}
