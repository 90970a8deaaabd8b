// One process of the shared-cache test (test/unit/training/refCache.test.ts): opens the reference cache, then
// `rounds` times adds `perRound` entries of its own and saves, as a training run does after each reference chunk.
import { createHash } from 'node:crypto'
import { RefLogpsCache, sumInOrder } from '../../src-main/services/training/refCache'

const [dir, modelDir, tag, rounds, perRound] = process.argv.slice(2) as [string, string, string, string, string]
const cache = RefLogpsCache.open(dir, { modelDir, quant: 'nf4', backend: 'cpu', engineVersion: '0.1.0' })
for (let r = 0; r < Number(rounds); r++) {
  for (let i = 0; i < Number(perRound); i++) {
    const key = createHash('sha256').update(`${tag}-${r}-${i}`).digest('hex')
    // Version-2 entries (sums with their per-token values), as a training run stores them.
    const chosenTokens = Float32Array.from([-r, -i / 8])
    const rejectedTokens = Float32Array.from([-r, -i / 16, -1])
    cache.set(key, {
      chosen: sumInOrder(chosenTokens),
      rejected: sumInOrder(rejectedTokens),
      chosenTokens,
      rejectedTokens,
    })
  }
  const err = cache.save()
  if (err) throw new Error(err)
}
