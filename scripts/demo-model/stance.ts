// Which side an answer takes (nearest sample answer by character-bigram overlap): lives in the app, which labels
// answers with it too; re-exported here for the demo-model script and the tests.
export { classifyStance, similarity, type StanceRow } from '../../src-shared/data/stance'
