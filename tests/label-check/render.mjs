// Renders ZPL with zpl-renderer-js (a WASM build of the Zebrash renderer), for Floorhand's
// label tests: a renderer we did not write checks the ZPL we generate.
// Usage: node render.mjs LABEL.zpl OUT.png|OUT.pgm [DPMM]
// A .pgm output is the same image as 8-bit grayscale PGM, which decode.py reads without
// an image library (the PNG is unpacked here with node's own zlib).
import fs from "node:fs";
import zlib from "node:zlib";
import { ready } from "zpl-renderer-js";

const [, , zplPath, outPath, dpmmArg] = process.argv;
if (!zplPath || !outPath) {
  console.error("usage: node render.mjs LABEL.zpl OUT.png|OUT.pgm [DPMM]");
  process.exit(2);
}
const dpmm = Number(dpmmArg ?? "8");
const zpl = fs.readFileSync(zplPath, "utf8");
const { api } = await ready;
// 4x6 inches = 101.6 x 152.4 mm.
const png = Buffer.from(await api.zplToBase64Async(zpl, 101.6, 152.4, dpmm), "base64");
fs.writeFileSync(outPath, outPath.endsWith(".pgm") ? pngToPgm(png) : png);

// 8-bit, non-interlaced PNG (grayscale, gray+alpha, RGB or RGBA) to grayscale PGM.
function pngToPgm(buf) {
  let pos = 8;
  let width, height, depth, colour, interlace;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const kind = buf.toString("latin1", pos + 4, pos + 8);
    const body = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === "IHDR") {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      depth = body[8];
      colour = body[9];
      interlace = body[12];
    } else if (kind === "IDAT") {
      idat.push(body);
    }
    pos += 12 + len;
  }
  const bpp = { 0: 1, 4: 2, 2: 3, 6: 4 }[colour];
  if (depth !== 8 || interlace !== 0 || !bpp) {
    throw new Error(`unsupported PNG: depth ${depth}, colour ${colour}`);
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * bpp;
  let prev = Buffer.alloc(stride);
  const gray = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? line[x - bpp] : 0;
      const b = prev[x];
      const c = x >= bpp ? prev[x - bpp] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) {
        const q = a + b - c;
        const pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      line[x] = (line[x] + p) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      const i = x * bpp;
      gray[y * width + x] =
        bpp >= 3 ? Math.round(0.3 * line[i] + 0.59 * line[i + 1] + 0.11 * line[i + 2]) : line[i];
    }
    prev = line;
  }
  return Buffer.concat([Buffer.from(`P5\n${width} ${height}\n255\n`), gray]);
}
