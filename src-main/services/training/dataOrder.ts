// The order in which training pairs are visited (docs/reference/trainer.md#data-order): torch's MT19937 and
// randperm_cpu, seeded per epoch the way accelerate's SeedableRandomSampler does it, so our data order equals the HF
// Trainer's for the same seed.

const N = 624
const M = 397
const MATRIX_A = 0x9908b0df
const UPPER_MASK = 0x80000000
const LOWER_MASK = 0x7fffffff

/**
 * 32-bit Mersenne Twister, identical to std::mt19937 and torch's at::mt19937 (ATen/core/MT19937RNGEngine.h):
 * init_with_uint32 sets state[0] = seed and state[j] = 1812433253 * (s ^ (s >>> 30)) + j (mod 2^32).
 */
export class MT19937 {
  private readonly state = new Uint32Array(N)
  private index = N

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0)
      throw new RangeError(`MT19937 seed must be a non-negative integer, got ${seed}`)
    // torch keeps the low 32 bits of a 64-bit seed (init_with_uint32(seed & 0xffffffff)).
    this.state[0] = seed >>> 0
    for (let j = 1; j < N; j++) {
      const s = this.state[j - 1]! ^ (this.state[j - 1]! >>> 30)
      this.state[j] = (Math.imul(1812433253, s) + j) >>> 0
    }
  }

  /** The next 32-bit output (torch CPUGeneratorImpl::random()). */
  nextUint32(): number {
    if (this.index >= N) this.twist()
    let y = this.state[this.index++]!
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    return y >>> 0
  }

  private twist(): void {
    const st = this.state
    for (let i = 0; i < N; i++) {
      const y = (st[i]! & UPPER_MASK) | (st[(i + 1) % N]! & LOWER_MASK)
      st[i] = (st[(i + M) % N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)) >>> 0
    }
    this.index = 0
  }
}

/**
 * torch.randperm(n, generator=g) on CPU for small n (TensorFactories.cpp randperm_cpu): r = [0..n-1]; for i in
 * 0..n-2, z = random() % (n - i), swap(r[i], r[i + z]). torch switches to 64-bit draws only for n >= 2^32 / 20,
 * far beyond any preference dataset, so that path is not implemented.
 */
export function randperm(n: number, seed: number): number[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`randperm size must be a non-negative integer, got ${n}`)
  if (n >= Math.floor(0xffffffff / 20)) throw new RangeError(`randperm size ${n} is too large for the 32-bit path`)
  const gen = new MT19937(seed)
  const r = Array.from({ length: n }, (_, i) => i)
  for (let i = 0; i < n - 1; i++) {
    const z = gen.nextUint32() % (n - i)
    const t = r[i]!
    r[i] = r[i + z]!
    r[i + z] = t
  }
  return r
}

/**
 * Indices of the pairs in the order epoch `epoch` (0-based) visits them: accelerate v0.33 SeedableRandomSampler
 * re-seeds its generator with initial_seed + epoch (initial_seed = the Trainer's seed after set_seed) and yields
 * torch.randperm(n) (docs/reference/trainer.md#data-order).
 */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  return randperm(n, seed + epoch)
}
