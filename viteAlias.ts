// The `@shared/*` import alias (src-shared: the contract main and the renderer share) for the renderer build and the
// vitest configs; tsconfig.base.json declares the same path. Main-side code imports src-shared by relative path,
// because the CLI runs unbundled under tsx from any directory, where no tsconfig path applies
// (docs/architecture.md#typescript-projects).
import { fileURLToPath } from 'node:url'

export const sharedAlias = { '@shared': fileURLToPath(new URL('./src-shared', import.meta.url)) }
