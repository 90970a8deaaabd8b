// One process of the shared-cache test (test/unit/training/refCache.test.ts): opens the reference cache, then
// `rounds` times adds `perRound` entries of its own and saves, as a training run does after each reference chunk.
import { createHash } from 'node:crypto'
import { RefLogpsCache } from '../../src-main/services/training/refCache'

const [dir, modelDir, tag, rounds, perRound] = process.argv.slice(2) as [string, string, string, string, string]
const cache = RefLogpsCache.open(dir, { modelDir, quant: 'nf4', backend: 'cpu', engineVersion: '0.1.0' })
for (let r = 0; r < Number(rounds); r++) {
  for (let i = 0; i < Number(perRound); i++) {
    const key = createHash('sha256').update(`${tag}-${r}-${i}`).digest('hex')
    cache.set(key, { chosen: -r - i / 10, rejected: -r - i / 10 - 1 })
  }
  const err = cache.save()
  if (err) throw new Error(err)
}
