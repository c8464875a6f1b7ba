// generated/console-client.js is written by `bun run build` (build-client.ts) and imported as
// text (assets.ts); it is not in git, so its type is declared here.
declare module "*/generated/console-client.js" {
  const text: string;
  export default text;
}
declare module "*.css" {
  const text: string;
  export default text;
}
