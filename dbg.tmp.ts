import path from 'node:path'
import { loadNative } from './src-main/engine/loadNative'
import { exportGguf } from './src-main/services/export/ggufExport'
import { exportMergedModel } from './src-main/services/export/mergedModel'
import { promptIds, renderPrompt } from './src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from './src-main/services/tokenizer/textTokenizer'
import { llamaForced, llamaGreedy, disposeLlama } from './test/helpers/llamaCpp'
import { tempDir } from './test/helpers/modelFixtures'
import { TINY_FAMILIES, makeTinyFamily } from './test/helpers/tinyFamilies'
const f = TINY_FAMILIES.find((x) => x.name === process.argv[2])!
const model = makeTinyFamily(f)
const root = tempDir('dbg-')
const out = await exportGguf({ modelDir: model, adapterDir: null, mergeBase: 'original', types: ['F32'], outDir: path.join(root, 'g') })
const merged = path.join(root, 'm'); await exportMergedModel({ modelDir: model, adapterDir: null, mergeBase: 'original', dtype: 'F32', outDir: merged })
const tok = await TextTokenizer.fromDir(merged)
const ids = promptIds(tok, renderPrompt(tok, 'The little dog ran to the park and').text)
const ours = await loadNative().loadModel(merged, { quant: 'none', backend: 'cpu' })
const g = [...(await ours.generate([ids], { maxNewTokens: 12, eosIds: [] })).tokens[0]!]
const forced = await llamaForced(out.models[0]!.file, ids, g)
for (let i = 0; i < g.length; i++) {
  const all = [...ids, ...g.slice(0, i + 1)]
  const lp = (await ours.logps([{ ids: all, labels: all.map((_, j) => (j === all.length - 1 ? all[j]! : -100)) }], 0))[0]!.logp
  console.log(i, g[i], forced[i]!.argmax, lp.toFixed(5), Math.log(forced[i]!.p).toFixed(5))
}
await disposeLlama()
