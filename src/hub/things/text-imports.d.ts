// `import x from "…/README.md" with { type: "text" }` gives the file's text, inlined by
// `bun build --compile`. bun-types declares *.yml (as any) but not *.md or *.py.
declare module "*.md" {
  const text: string;
  export default text;
}
declare module "*.py" {
  const text: string;
  export default text;
}
