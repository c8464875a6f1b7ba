// `import template from "…/flashlex.service" with { type: "text" }` gives the file's text: Bun
// inlines it when compiling the binary. bun-types only declares *.txt, so say it for *.service.
declare module "*.service" {
  const text: string;
  export default text;
}
