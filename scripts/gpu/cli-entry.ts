// Entry of the bundled CLI (.gpu/cli.js, scripts/gpu/bundle-cli.sh). main.ts starts itself only when run as main.ts
// or dpo-studio(.mjs), so the bundle calls main() here. The addon is found as the CLI always finds it:
// $DPO_ENGINE_PATH, else build/native/Release/dpo_engine.node under the nearest folder with a package.json.
import { main } from '../../src-main/cli/main'

process.exitCode = await main(process.argv.slice(2))
