// run_model: runs an archc deploy package's library with TVM's C++ runtime (the Relax VM); no Python needed.
//
//   ./run_model MODEL.so IN0.npy [IN1.npy ...] [-o OUT_DIR] [--repeat N] [--threads N] [--device cpu|cuda]
//
// Inputs are .npy files (little endian, C order), one per model input in the manifest's order. Each output is
// written to OUT_DIR/out<i>.npy; a detector package's (detection.txt beside the model) also boxes.npy, scores.npy
// and classes.npy, its decoded boxes (a two-stage detector's, Faster R-CNN's: its stage two, the library in the
// package's heads/ folder, run on the proposals chosen from stage one's outputs, written as proposals.npy). It prints every input's and output's shape and the time of a run (the median of
// N runs after a warm-up with --repeat N). --threads N: the threads of the library's parallel loops (archc's pool,
// linked into it), this one included; default TVM_NUM_THREADS, else every CPU. An error is one line on stderr, exit
// status 1 (2 for bad usage).
// Built by the Makefile next to this file; see the package's README.md.
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

// ---- errors: thrown, printed as one line -------------------------------------------------------------------------
struct Failure {
  int code;
  std::string message;
};

[[noreturn]] void Fail(const std::string& message, int code = 1) { throw Failure{code, message}; }

std::string OneLine(const std::string& text, size_t limit = 400) {
  std::string out;
  for (char c : text) {
    bool space = c == '\n' || c == '\r' || c == '\t' || c == ' ';
    if (space && (out.empty() || out.back() == ' ')) continue;
    out += space ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.size() > limit ? out.substr(0, limit) + "..." : out;
}

// ---- dtypes: the ones .npy and the model share ------------------------------------------------------------------
struct DType {
  const char* name;
  char code;  // the .npy type character
  DLDataType dl;
};

const DType kTypes[] = {
    {"float32", 'f', {kDLFloat, 32, 1}}, {"float64", 'f', {kDLFloat, 64, 1}}, {"float16", 'f', {kDLFloat, 16, 1}},
    {"int8", 'i', {kDLInt, 8, 1}},       {"int16", 'i', {kDLInt, 16, 1}},     {"int32", 'i', {kDLInt, 32, 1}},
    {"int64", 'i', {kDLInt, 64, 1}},     {"uint8", 'u', {kDLUInt, 8, 1}},     {"uint16", 'u', {kDLUInt, 16, 1}},
    {"uint32", 'u', {kDLUInt, 32, 1}},   {"uint64", 'u', {kDLUInt, 64, 1}},   {"bool", 'b', {kDLBool, 8, 1}},
};

const DType* ByDL(DLDataType t) {
  for (const DType& d : kTypes)
    if (d.dl.code == t.code && d.dl.bits == t.bits && d.dl.lanes == t.lanes) return &d;
  return nullptr;
}

std::string Descr(const DType& t) {  // '<f4', '|u1'
  int size = t.dl.bits / 8;
  return std::string(size == 1 ? "|" : "<") + t.code + std::to_string(size);
}

std::string Dims(const std::vector<int64_t>& shape) {
  if (shape.empty()) return "scalar";
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "×" : "") + std::to_string(shape[i]);
  return s;
}

// ---- .npy: read and write (format 1.0-3.0, little endian or byte-sized types, C order) -------------------------
struct Npy {
  const DType* type = nullptr;
  std::vector<int64_t> shape;
  std::vector<char> data;
};

std::vector<char> ReadFile(const std::string& path, const std::string& what, size_t limit = SIZE_MAX) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) Fail("cannot read " + what + " '" + path + "': " + std::strerror(errno));
  std::vector<char> bytes;
  char buf[1 << 16];
  size_t n;
  while (bytes.size() < limit && (n = std::fread(buf, 1, std::min(sizeof(buf), limit - bytes.size()), f)) > 0)
    bytes.insert(bytes.end(), buf, buf + n);
  std::fclose(f);
  return bytes;
}

// The value after 'key': in the header's dict, as written (a quoted string, True/False, or a tuple).
std::string HeaderValue(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) Fail("'" + path + "' is not a valid .npy file (its header has no " + key + ")");
  at = header.find(':', at);
  if (at == std::string::npos) Fail("'" + path + "' is not a valid .npy file (a corrupt header)");
  at = header.find_first_not_of(' ', at + 1);
  if (at == std::string::npos) Fail("'" + path + "' is not a valid .npy file (a corrupt header)");
  char open = header[at];
  char close = open == '(' ? ')' : open == '\'' || open == '"' ? open : ',';
  size_t end = header.find(close, at + 1);
  if (end == std::string::npos) Fail("'" + path + "' is not a valid .npy file (a corrupt header)");
  // a bare value (True, False) runs to the next comma and keeps its first letter; a quoted or bracketed one drops
  // its delimiters
  return close == ',' ? header.substr(at, end - at) : header.substr(at + 1, end - at - 1);
}

Npy ReadNpy(const std::string& path) {
  std::vector<char> bytes = ReadFile(path, "input");
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
    Fail("'" + path + "' is not a .npy file (save arrays with numpy.save)");
  size_t header_len, start;
  if (u[6] == 1) {
    header_len = u[8] | (u[9] << 8);
    start = 10;
  } else if ((u[6] == 2 || u[6] == 3) && bytes.size() >= 12) {
    header_len = u[8] | (u[9] << 8) | (u[10] << 16) | (static_cast<size_t>(u[11]) << 24);
    start = 12;
  } else {
    Fail("'" + path + "' is a .npy file of an unknown format version " + std::to_string(u[6]));
  }
  if (start + header_len > bytes.size()) Fail("'" + path + "' is truncated (in its header)");
  std::string header(bytes.data() + start, header_len);
  Npy npy;
  std::string descr = HeaderValue(header, "descr", path);
  if (descr.size() < 3 || std::string("<>|=").find(descr[0]) == std::string::npos)
    Fail("'" + path + "' holds the dtype " + descr + ", which run_model does not read (numbers and bools only)");
  int size = std::atoi(descr.c_str() + 2);
  for (const DType& d : kTypes)
    if (d.code == descr[1] && d.dl.bits == size * 8) npy.type = &d;
  if (!npy.type)
    Fail("'" + path + "' holds the dtype " + descr + ", which run_model does not read (numbers and bools only)");
  if (descr[0] == '>' && size > 1)
    Fail("'" + path + "' is big endian; save it little endian (array.astype('<" + descr.substr(1) + "'))");
  if (HeaderValue(header, "fortran_order", path).find("True") != std::string::npos)
    Fail("'" + path + "' is in Fortran order; save it in C order (numpy.ascontiguousarray)");
  std::string dims = HeaderValue(header, "shape", path);
  for (size_t i = 0; i < dims.size();) {
    size_t j = dims.find(',', i);
    if (j == std::string::npos) j = dims.size();
    std::string item = dims.substr(i, j - i);
    if (item.find_first_not_of(' ') != std::string::npos) npy.shape.push_back(std::atoll(item.c_str()));
    i = j + 1;
  }
  size_t count = 1;
  for (int64_t d : npy.shape) count *= static_cast<size_t>(d);
  size_t nbytes = count * size, have = bytes.size() - start - header_len;
  if (have != nbytes)
    Fail("'" + path + "' holds " + std::to_string(have) + " bytes of data, but its header says " + Dims(npy.shape) +
         " " + npy.type->name + " (" + std::to_string(nbytes) + " bytes)");
  npy.data.assign(bytes.begin() + start + header_len, bytes.end());
  return npy;
}

void WriteNpy(const std::string& path, const DType& type, const std::vector<int64_t>& shape,
              const std::vector<char>& data) {
  std::string dims = "(";
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  dims += shape.size() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + Descr(type) + "', 'fortran_order': False, 'shape': " + dims + ", }";
  header += std::string((64 - (10 + header.size() + 1) % 64) % 64, ' ') + "\n";  // data starts 64-byte aligned
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) Fail("cannot write '" + path + "': " + std::strerror(errno));
  unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(header.size() & 0xff),
                              static_cast<unsigned char>(header.size() >> 8)};
  bool ok = std::fwrite(prefix, 1, 10, f) == 10 && std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data.data(), 1, data.size(), f) == data.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) Fail("cannot write '" + path + "': " + std::strerror(errno));
}

void MakeDirs(const std::string& dir) {
  for (size_t at = 1; at <= dir.size(); ++at) {
    if (at < dir.size() && dir[at] != '/') continue;
    std::string part = dir.substr(0, at);
    if (mkdir(part.c_str(), 0777) != 0 && errno != EEXIST)
      Fail("cannot make the output folder '" + dir + "': " + std::strerror(errno));
  }
}

// ---- a detector's post-processing: detection.txt beside the model (archc compile --detect) ---------------------
// YOLO's decoding (v2's region output, v3's heads), Faster R-CNN's proposals and per-class decoding, and greedy
// per-class non-maximum suppression, as the Python
// loader's archc_detect.py does it (the same steps in the same order, in double precision): see that file for the
// arithmetic.
struct Head {
  int output = 0;
  std::vector<double> anchors;  // w, h pairs: grid cells (yolov2) or input pixels (yolov3)
};

struct Detection {
  std::string kind;
  std::vector<Head> heads;
  int classes = 0, max_boxes = 100;
  double confidence = 0.25, iou = 0.45;
  // Faster R-CNN's two stages (archc_detect.py's proposals and rcnn): stage one's outputs `scores` (N×2k×H×W) and
  // `deltas` (N×4k×H×W), anchors of `sizes` × `ratios` every `stride` pixels; stage two, the library
  // `heads_library` (relative to this file's folder), takes stage one's outputs `passes` and the proposals, and
  // gives the class scores (output `cls`) and box offsets (output `box`)
  int scores = -1, deltas = -1, stride = 0, cls = -1, box = -1, pre_nms = 1000;
  double rpn_iou = 0.7;
  std::vector<double> sizes, ratios;
  std::vector<int> passes;
  std::vector<int64_t> rois;  // the proposals input's shape: R×4 or 1×R×4
  std::string heads_library;
};

std::optional<Detection> ReadDetection(const std::string& model) {
  size_t slash = model.rfind('/');
  std::string path = (slash == std::string::npos ? std::string(".") : model.substr(0, slash)) + "/detection.txt";
  std::ifstream in(path);
  if (!in) return std::nullopt;
  Detection d;
  std::string line, key;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    if (!(words >> key)) continue;
    if (key == "kind") {
      words >> d.kind;
      if (d.kind != "yolov2" && d.kind != "yolov3" && d.kind != "faster_rcnn")
        Fail("'" + path + "' asks for a '" + d.kind + "' decoding, which this loader lacks");
    } else if (key == "head") {
      Head h;
      words >> h.output;
      for (double a; words >> a;) h.anchors.push_back(a);
      d.heads.push_back(h);
    } else if (key == "classes") {
      words >> d.classes;
    } else if (key == "confidence") {
      words >> d.confidence;
    } else if (key == "iou") {
      words >> d.iou;
    } else if (key == "max_boxes") {
      words >> d.max_boxes;
    } else if (key == "scores") {
      words >> d.scores;
    } else if (key == "deltas") {
      words >> d.deltas;
    } else if (key == "sizes") {
      for (double v; words >> v;) d.sizes.push_back(v);
    } else if (key == "ratios") {
      for (double v; words >> v;) d.ratios.push_back(v);
    } else if (key == "stride") {
      words >> d.stride;
    } else if (key == "passes") {
      for (int v; words >> v;) d.passes.push_back(v);
    } else if (key == "cls") {
      words >> d.cls;
    } else if (key == "box") {
      words >> d.box;
    } else if (key == "pre_nms") {
      words >> d.pre_nms;
    } else if (key == "rpn_iou") {
      words >> d.rpn_iou;
    } else if (key == "rois") {
      for (int64_t v; words >> v;) d.rois.push_back(v);
    } else if (key == "heads") {
      words >> d.heads_library;
      d.heads_library = path.substr(0, path.size() - std::string("detection.txt").size()) + d.heads_library;
    }
  }
  bool ok = !d.kind.empty() && d.classes >= 1;
  if (d.kind == "faster_rcnn") {
    ok = ok && d.scores >= 0 && d.deltas >= 0 && d.stride > 0 && d.cls >= 0 && d.box >= 0 && d.pre_nms > 0 &&
         !d.sizes.empty() && !d.ratios.empty() && !d.passes.empty() && !d.heads_library.empty() &&
         d.rois.size() >= 2 && d.rois.back() == 4 && d.rois[d.rois.size() - 2] > 0;
  } else {
    ok = ok && !d.heads.empty();
  }
  for (const Head& h : d.heads) ok = ok && !h.anchors.empty() && h.anchors.size() % 2 == 0 && h.output >= 0;
  if (!ok) Fail("'" + path + "' is malformed");
  return d;
}

struct Candidate {
  double x1, y1, x2, y2, score;
  int64_t cls;
};

// One head's candidates above the confidence, in the order anchor, row, column.
void DecodeHead(const Detection& d, const Head& head, const float* raw, const std::vector<int64_t>& shape,
                int64_t image_h, int64_t image_w, std::vector<Candidate>* found) {
  const int64_t a_count = static_cast<int64_t>(head.anchors.size() / 2), c = d.classes, per = 5 + c;
  if (shape.size() != 4 || shape[1] != a_count * per)
    Fail("output " + std::to_string(head.output) + " is " + Dims(shape) + "; " + std::to_string(a_count) +
         " anchors × (5 + " + std::to_string(c) + ") classes do not fit it");
  const int64_t h = shape[2], w = shape[3];
  const bool v2 = d.kind == "yolov2";
  const double unit_w = static_cast<double>(v2 ? w : image_w), unit_h = static_cast<double>(v2 ? h : image_h);
  auto at = [&](int64_t a, int64_t k, int64_t y, int64_t x) {
    return static_cast<double>(raw[((a * per + k) * h + y) * w + x]);
  };
  auto sigmoid = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (int64_t a = 0; a < a_count; ++a) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        double cx = (static_cast<double>(x) + sigmoid(at(a, 0, y, x))) / static_cast<double>(w);
        double cy = (static_cast<double>(y) + sigmoid(at(a, 1, y, x))) / static_cast<double>(h);
        double bw = head.anchors[2 * a] * std::exp(at(a, 2, y, x)) / unit_w;
        double bh = head.anchors[2 * a + 1] * std::exp(at(a, 3, y, x)) / unit_h;
        double objectness = sigmoid(at(a, 4, y, x));
        double best_p = -1;
        int64_t best = 0;
        if (v2) {  // softmax over the classes
          double top = at(a, 5, y, x), sum = 0;
          for (int64_t k = 1; k < c; ++k) top = std::max(top, at(a, 5 + k, y, x));
          for (int64_t k = 0; k < c; ++k) {
            double e = std::exp(at(a, 5 + k, y, x) - top);
            sum += e;
            if (e > best_p) best_p = e, best = k;
          }
          best_p /= sum;
        } else {  // each class its own sigmoid
          for (int64_t k = 0; k < c; ++k) {
            double p = sigmoid(at(a, 5 + k, y, x));
            if (p > best_p) best_p = p, best = k;
          }
        }
        double score = objectness * best_p;
        if (score > d.confidence)
          found->push_back({(cx - bw / 2) * static_cast<double>(image_w), (cy - bh / 2) * static_cast<double>(image_h),
                            (cx + bw / 2) * static_cast<double>(image_w), (cy + bh / 2) * static_cast<double>(image_h),
                            score, best});
      }
    }
  }
}

// The best first, a box dropped where a kept one of its class overlaps it by more than `iou`, `max_boxes` kept.
std::vector<Candidate> Suppress(std::vector<Candidate> found, double iou, int max_boxes) {
  std::stable_sort(found.begin(), found.end(), [](const Candidate& p, const Candidate& q) {
    return p.score > q.score;
  });
  std::vector<Candidate> kept;
  for (const Candidate& b : found) {
    bool suppressed = false;
    for (const Candidate& k : kept) {
      if (k.cls != b.cls) continue;
      double ix = std::min(b.x2, k.x2) - std::max(b.x1, k.x1), iy = std::min(b.y2, k.y2) - std::max(b.y1, k.y1);
      double inter = std::max(ix, 0.0) * std::max(iy, 0.0);
      double uni = (b.x2 - b.x1) * (b.y2 - b.y1) + (k.x2 - k.x1) * (k.y2 - k.y1) - inter;
      if (uni > 0 && inter / uni > iou) {
        suppressed = true;
        break;
      }
    }
    if (!suppressed) kept.push_back(b);
  }
  if (kept.size() > static_cast<size_t>(std::max(max_boxes, 0))) kept.resize(static_cast<size_t>(max_boxes));
  return kept;
}

// ---- Faster R-CNN: the proposals between its stages, and its per-class decoding (archc_detect.py's) -------------
const double kClamp = std::log(1000.0 / 16);
const double kMinSize = 1e-3;

// Offsets (dx, dy, dw, dh), each divided by its weight, applied to a box (x1, y1, x2, y2), then clipped.
void DecodeBox(const double* b, const double* delta, const double* weight, int64_t image_h, int64_t image_w,
               double* out) {
  double w = b[2] - b[0], h = b[3] - b[1];
  double cx = b[0] + 0.5 * w, cy = b[1] + 0.5 * h;
  double dx = delta[0] / weight[0], dy = delta[1] / weight[1];
  double dw = std::min(delta[2] / weight[2], kClamp), dh = std::min(delta[3] / weight[3], kClamp);
  double px = dx * w + cx, py = dy * h + cy, pw = std::exp(dw) * w, ph = std::exp(dh) * h;
  double box[4] = {px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph};
  double limit[4] = {static_cast<double>(image_w), static_cast<double>(image_h), static_cast<double>(image_w),
                     static_cast<double>(image_h)};
  for (int i = 0; i < 4; ++i) out[i] = std::min(std::max(box[i], 0.0), limit[i]);
}

// The RPN's `count` proposals (count×4, the last real one repeated, or zeros) and how many are real.
std::vector<float> Proposals(const Detection& d, const std::vector<float>& scores, const std::vector<int64_t>& s_shape,
                             const std::vector<float>& deltas, const std::vector<int64_t>& d_shape, int64_t image_h,
                             int64_t image_w, int64_t count, int64_t* real) {
  const int64_t k = static_cast<int64_t>(d.sizes.size() * d.ratios.size());
  if (s_shape.size() != 4 || d_shape.size() != 4 || s_shape[1] != 2 * k || d_shape[1] != 4 * k ||
      s_shape[2] != d_shape[2] || s_shape[3] != d_shape[3])
    Fail("the RPN's outputs are " + Dims(s_shape) + " and " + Dims(d_shape) + "; " + std::to_string(k) +
         " anchors need N×" + std::to_string(2 * k) + "×H×W and N×" + std::to_string(4 * k) + "×H×W");
  const int64_t h = s_shape[2], w = s_shape[3];
  std::vector<double> base;  // ratio by ratio, size by size: s/√r wide, s·√r high, corners rounded
  for (double r : d.ratios) {
    for (double size : d.sizes) {
      double hr = std::sqrt(r), ws = (1 / hr) * size, hs = hr * size;
      for (double v : {-ws, -hs, ws, hs}) base.push_back(std::nearbyint(v / 2));
    }
  }
  std::vector<Candidate> found;
  std::vector<double> boxes;
  const double one[4] = {1, 1, 1, 1};
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t a = 0; a < k; ++a) {
        double sx = static_cast<double>(x * d.stride), sy = static_cast<double>(y * d.stride);
        double anchor[4] = {sx + base[4 * a], sy + base[4 * a + 1], sx + base[4 * a + 2], sy + base[4 * a + 3]};
        double delta[4];
        for (int64_t j = 0; j < 4; ++j) delta[j] = deltas[((a * 4 + j) * h + y) * w + x];
        double b[4];
        DecodeBox(anchor, delta, one, image_h, image_w, b);
        double bg = scores[(a * h + y) * w + x], fg = scores[((k + a) * h + y) * w + x];
        if (b[2] - b[0] >= kMinSize && b[3] - b[1] >= kMinSize)
          found.push_back({b[0], b[1], b[2], b[3], 1 / (1 + std::exp(bg - fg)), 0});
      }
    }
  }
  std::stable_sort(found.begin(), found.end(), [](const Candidate& p, const Candidate& q) {
    return p.score > q.score;
  });
  if (found.size() > static_cast<size_t>(d.pre_nms)) found.resize(static_cast<size_t>(d.pre_nms));
  std::vector<Candidate> kept = Suppress(std::move(found), d.rpn_iou, static_cast<int>(count));
  std::vector<float> rois(static_cast<size_t>(count) * 4, 0.0f);
  for (int64_t i = 0; i < count && !kept.empty(); ++i) {
    const Candidate& c = kept[std::min<size_t>(static_cast<size_t>(i), kept.size() - 1)];
    float v[4] = {static_cast<float>(c.x1), static_cast<float>(c.y1), static_cast<float>(c.x2),
                  static_cast<float>(c.y2)};
    std::copy(v, v + 4, rois.begin() + 4 * i);
  }
  *real = static_cast<int64_t>(kept.size());
  return rois;
}

// Stage two's class scores (R×(K + 1), background first) and offsets (R×4K) for the first `real` proposals:
// each class's box and probability, above the confidence and not under 1e-2 pixels, in proposal, class order.
std::vector<Candidate> DecodeRcnn(const Detection& d, const std::vector<float>& cls, const std::vector<float>& box,
                                  const std::vector<float>& rois, int64_t real, int64_t image_h, int64_t image_w) {
  const int64_t c = d.classes;
  const double weights[4] = {10, 10, 5, 5};
  std::vector<Candidate> found;
  for (int64_t r = 0; r < real; ++r) {
    const float* logits = cls.data() + r * (c + 1);
    double top = logits[0], sum = 0;
    for (int64_t j = 1; j <= c; ++j) top = std::max(top, static_cast<double>(logits[j]));
    for (int64_t j = 0; j <= c; ++j) sum += std::exp(static_cast<double>(logits[j]) - top);
    double roi[4] = {rois[4 * r], rois[4 * r + 1], rois[4 * r + 2], rois[4 * r + 3]};
    for (int64_t j = 0; j < c; ++j) {
      double p = std::exp(static_cast<double>(logits[j + 1]) - top) / sum;
      double delta[4], b[4];
      for (int64_t q = 0; q < 4; ++q) delta[q] = box[(r * c + j) * 4 + q];
      DecodeBox(roi, delta, weights, image_h, image_w, b);
      if (p > d.confidence && b[2] - b[0] >= 1e-2 && b[3] - b[1] >= 1e-2) found.push_back({b[0], b[1], b[2], b[3], p, j});
    }
  }
  return found;
}

// The boxes as boxes.npy (K×4 float32), scores.npy (K float32), classes.npy (K int64) in OUT_DIR, and on stdout.
void WriteDetections(const std::vector<Candidate>& boxes, const std::string& out_dir, double confidence) {
  std::printf("detections: %zu above %g\n", boxes.size(), confidence);
  for (size_t i = 0; i < boxes.size() && i < 10; ++i)
    std::printf("  class %lld %.3f at (%.1f, %.1f, %.1f, %.1f)\n", static_cast<long long>(boxes[i].cls),
                static_cast<float>(boxes[i].score), static_cast<float>(boxes[i].x1), static_cast<float>(boxes[i].y1),
                static_cast<float>(boxes[i].x2), static_cast<float>(boxes[i].y2));
  if (out_dir.empty()) return;
  std::vector<char> corners(boxes.size() * 4 * sizeof(float)), scores(boxes.size() * sizeof(float)),
      classes(boxes.size() * sizeof(int64_t));
  for (size_t i = 0; i < boxes.size(); ++i) {  // float32, as the Python loader returns them
    float c[4] = {static_cast<float>(boxes[i].x1), static_cast<float>(boxes[i].y1), static_cast<float>(boxes[i].x2),
                  static_cast<float>(boxes[i].y2)};
    float score = static_cast<float>(boxes[i].score);
    std::memcpy(corners.data() + i * sizeof(c), c, sizeof(c));
    std::memcpy(scores.data() + i * sizeof(float), &score, sizeof(float));
    std::memcpy(classes.data() + i * sizeof(int64_t), &boxes[i].cls, sizeof(int64_t));
  }
  const int64_t k = static_cast<int64_t>(boxes.size());
  WriteNpy(out_dir + "/boxes.npy", *ByDL(DLDataType{kDLFloat, 32, 1}), {k, 4}, corners);
  WriteNpy(out_dir + "/scores.npy", *ByDL(DLDataType{kDLFloat, 32, 1}), {k}, scores);
  WriteNpy(out_dir + "/classes.npy", *ByDL(DLDataType{kDLInt, 64, 1}), {k}, classes);
}

// ---- the runtime ------------------------------------------------------------------------------------------------
// TVM's optional runtime libraries register functions when loaded: libtvm_runtime_extra.so (sort/top-k kernels
// that CPU code calls), libtvm_runtime_cuda.so (the CUDA device and module loader; only in a CUDA package). They
// are loaded from lib/ next to this program; a failure is reported only if the library then does not load.
std::vector<std::string> LoadSidecars() {
  std::vector<std::string> problems;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return problems;
  std::string dir(exe, n);
  dir = dir.substr(0, dir.rfind('/') + 1) + "lib/";
  for (const char* name : {"libtvm_runtime_extra.so", "libtvm_runtime_cuda.so"}) {
    std::string path = dir + name;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;
    if (!dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      const char* why = dlerror();
      problems.push_back(std::string("lib/") + name + " did not load: " + (why ? why : "unknown reason"));
    }
  }
  return problems;
}

// The model must be a shared library for this machine's architecture (dlopen's own message for one built for
// another is cryptic).
void CheckLibrary(const std::string& path) {
  std::vector<char> head = ReadFile(path, "the model", 64);
  if (head.size() < 20 || std::memcmp(head.data(), "\x7f" "ELF", 4) != 0)
    Fail("the model '" + path + "' is not a shared library; give the package's <model>.so");
  const auto* u = reinterpret_cast<const unsigned char*>(head.data());
  auto field = [&](size_t at, size_t size) {  // little endian
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) v |= static_cast<uint64_t>(u[at + i]) << (8 * i);
    return v;
  };
  int machine = static_cast<int>(field(18, 2));
  struct stat st;
  // a 64-bit library's section headers are its last bytes: one cut short would crash dlopen (SIGBUS)
  if (head.size() == 64 && u[4] == 2 && stat(path.c_str(), &st) == 0 &&
      field(40, 8) + field(60, 2) * field(58, 2) > static_cast<uint64_t>(st.st_size))
    Fail("the model '" + path + "' is truncated (" + std::to_string(st.st_size) + " bytes); copy it again");
#if defined(__x86_64__)
  const int kHere = 62;
#elif defined(__aarch64__)
  const int kHere = 183;
#else
  const int kHere = machine;
#endif
  auto name = [](int m) -> std::string {
    return m == 62 ? "x86-64" : m == 183 ? "aarch64" : m == 40 ? "32-bit ARM" : m == 243 ? "RISC-V"
                                                                                  : "machine " + std::to_string(m);
  };
  if (machine != kHere)
    Fail("the model '" + path + "' is built for " + name(machine) + " and cannot run on this " + name(kHere) +
         " machine; run it on the device (and build run_model for it)");
}

ffi::Function Global(const char* name) {
  auto f = ffi::Function::GetGlobal(name);
  if (!f) Fail(std::string("TVM's runtime lacks the function ") + name + "; is lib/ from another TVM version?");
  return *f;
}

ffi::Function Method(const ffi::Module& mod, const char* name, const std::string& what) {
  ffi::Optional<ffi::Function> f = mod->GetFunction(name);
  if (!f.has_value()) Fail(what + " has no function " + name + "; is it a library that archc compiled?");
  return f.value();
}

// The first device a library's modules need besides the CPU (a CUDA package's kernels are an imported module).
DLDeviceType NeededDevice(const ffi::Module& mod) {
  std::string kind = mod->kind();
  if (kind == "cuda") return kDLCUDA;
  for (const ffi::Any& item : mod->imports()) {
    if (auto sub = item.as<ffi::Module>()) {
      DLDeviceType t = NeededDevice(*sub);
      if (t != kDLCPU) return t;
    }
  }
  return kDLCPU;
}

void Flatten(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto tensor = value.as<ffi::Tensor>()) {
    out->push_back(*tensor);
  } else if (auto items = value.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *items) Flatten(item, out);
  } else {
    Fail("the model returned a " + value.GetTypeKey() + ", not tensors");
  }
}

// The VM checks each argument against main's signature; its message names the parameter and its annotation:
//   ErrorContext(fn=main, loc=param[0], param=image, annotation=R.Tensor((1, 1, 32, 32), dtype="float32")) ...
// This turns it into the expected shape and dtype of that input, or returns "" when the message is another one.
std::string InputMismatch(const std::string& message, const std::vector<std::string>& files,
                          const std::vector<Npy>& inputs) {
  size_t at = message.find("loc=param[");
  size_t ann = message.find("annotation=R.Tensor((");
  if (at == std::string::npos || ann == std::string::npos) return "";
  size_t index = std::strtoul(message.c_str() + at + 10, nullptr, 10);
  if (index >= inputs.size()) return "";
  std::string name;
  size_t p = message.find("param=", at);
  if (p != std::string::npos) name = message.substr(p + 6, message.find(',', p) - p - 6);
  size_t dims_end = message.find(')', ann);
  std::string dims = message.substr(ann + 21, dims_end - ann - 21), want;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == ' ') continue;
    want += dims[i] == ',' ? "×" : std::string(1, dims[i]);
  }
  if (want.size() >= 2 && want.compare(want.size() - 2, 2, "×") == 0) want.resize(want.size() - 2);  // (n,)
  if (want.empty()) want = "scalar";
  size_t q = message.find("dtype=\"", dims_end);
  if (q != std::string::npos) want += " " + message.substr(q + 7, message.find('"', q + 7) - q - 7);
  return "input " + std::to_string(index + 1) + " ('" + files[index] + "') is " + Dims(inputs[index].shape) + " " +
         inputs[index].type->name + ", but the model's input '" + name + "' is " + want;
}

struct Options {
  std::string model, out_dir, device;
  std::vector<std::string> inputs;
  int repeat = 1;
  int threads = 0;  // 0: the pool's default (TVM_NUM_THREADS, else every CPU)
};

const char* kUsage =
    "usage: run_model MODEL.so IN0.npy [IN1.npy ...] [-o OUT_DIR] [--repeat N] [--threads N] [--device cpu|cuda]\n"
    "  runs the model on the .npy inputs (in the manifest's order), writes OUT_DIR/out<i>.npy for each output,\n"
    "  prints their shapes and the time of a run (with --repeat N: the median of N runs after a warm-up);\n"
    "  --threads N: the threads of its parallel loops (default: TVM_NUM_THREADS, else every CPU)\n";

const int kMaxThreads = 1024;  // archc's pool (pool.c's MAX_THREADS)

// A thread count from 1 to kMaxThreads, or -1.
int ThreadCount(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(text.c_str(), &end, 10);
  return text.empty() || *end || errno || n < 1 || n > kMaxThreads ? -1 : static_cast<int>(n);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Fail(a + " needs a value (run_model --help shows the usage)", 2);
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "-o" || a == "--output") {
      o.out_dir = value();
    } else if (a == "--repeat") {
      std::string v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 1 || n > 1000000) Fail("--repeat takes a count of runs from 1, not '" + v + "'", 2);
      o.repeat = static_cast<int>(n);
    } else if (a == "--threads") {
      std::string v = value();
      o.threads = ThreadCount(v);
      if (o.threads < 0)
        Fail("--threads takes a number of threads from 1 to " + std::to_string(kMaxThreads) + ", not '" + v + "'", 2);
    } else if (a == "--device") {
      o.device = value();
      if (o.device != "cpu" && o.device != "cuda") Fail("--device is cpu or cuda, not '" + o.device + "'", 2);
    } else if (a.size() > 1 && a[0] == '-') {
      Fail("unknown option " + a + " (run_model --help shows the usage)", 2);
    } else if (o.model.empty()) {
      o.model = a;
    } else {
      o.inputs.push_back(a);
    }
  }
  if (o.model.empty()) Fail("no model given; usage: run_model MODEL.so IN0.npy [IN1.npy ...] [-o OUT_DIR] ...", 2);
  const char* env = std::getenv("TVM_NUM_THREADS");  // the pool's default: not taken for "all" when it is no count
  if (o.threads == 0 && env && *env && ThreadCount(env) < 0)
    Fail(std::string("the environment variable TVM_NUM_THREADS is '") + env + "': set it to a number of threads " +
         "from 1 to " + std::to_string(kMaxThreads) + ", or unset it to use every CPU (or give --threads N)");
  return o;
}

// --threads: archc's pool in the library (pool.c's exported archc_pool_set_threads), set before the first run.
// dlopen of the file TVM loaded, RTLD_NOLOAD, returns TVM's handle of it.
void SetThreads(const std::string& path, const std::string& model, int threads) {
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  void* symbol = handle ? dlsym(handle, "archc_pool_set_threads") : nullptr;
  if (!symbol) {
    if (handle) dlclose(handle);
    Fail("the model '" + model + "' has no archc thread pool to set --threads on (built by another archc version); " +
         "compile the package again, or leave --threads out");
  }
  int rc = reinterpret_cast<int (*)(int)>(symbol)(threads);
  dlclose(handle);  // TVM's own reference keeps it loaded
  if (rc != 0) Fail("the model '" + model + "' refused --threads " + std::to_string(threads));
}

double Milliseconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// A library loaded, its VM initialised on `device` (the CPU when kDLExtDev: the device the library needs).
struct Loaded {
  ffi::Module library{ffi::UnsafeInit()};
  ffi::Module vm{ffi::UnsafeInit()};
  DLDevice device{kDLCPU, 0};
};

Loaded Load(const std::string& model, const std::vector<std::string>& sidecar_problems, int threads,
            DLDeviceType device_type) {
  CheckLibrary(model);
  Loaded l;
  // dlopen looks a name without a slash up on the library path, not in the current folder
  std::string path = model.find('/') == std::string::npos ? "./" + model : model;
  try {
    l.library = ffi::Module::LoadFromFile(path);
  } catch (const ffi::Error& e) {
    std::string why = OneLine(e.message()), hint = "is it built for this machine and this TVM?";
    for (const std::string& p : sidecar_problems) {
      why += "; " + p;
      if (p.find("cuda") != std::string::npos)
        hint = "a CUDA package needs an NVIDIA GPU, its driver and CUDA's runtime";
    }
    Fail("the model '" + model + "' does not load (" + why + "); " + hint);
  }
  if (threads > 0) SetThreads(path, model, threads);
  l.vm = Method(l.library, "vm_load_executable", "'" + model + "'")().cast<ffi::Module>();
  l.device = DLDevice{device_type == kDLExtDev ? NeededDevice(l.library) : device_type, 0};
  const int kPooled = 2;  // tvm::runtime::memory::AllocatorType::kPooled
  ffi::Function init = Method(l.vm, "vm_initialization", "the model's VM");
  if (l.device.device_type == kDLCPU)
    init(static_cast<int>(kDLCPU), 0, kPooled);
  else  // the device, then the CPU for shape computations
    init(static_cast<int>(l.device.device_type), 0, kPooled, static_cast<int>(kDLCPU), 0, kPooled);
  return l;
}

std::vector<int64_t> ShapeOf(const ffi::Tensor& t) { return std::vector<int64_t>(t.shape().begin(), t.shape().end()); }

// A float32 output's values, copied to the host.
std::vector<float> HostFloats(const std::vector<ffi::Tensor>& outputs, int index, const std::string& what) {
  if (index < 0 || index >= static_cast<int>(outputs.size()) ||
      ByDL(outputs[index].dtype()) != ByDL(DLDataType{kDLFloat, 32, 1}))
    Fail("detection.txt decodes " + what + " output " + std::to_string(index) + ", which is no float32 output");
  const ffi::Tensor& y = outputs[index];
  std::vector<float> raw(ffi::GetDataSize(*y.GetDLTensorPtr()) / sizeof(float));
  Global("runtime.TVMTensorCopyToBytes")(y, static_cast<void*>(raw.data()),
                                         static_cast<int64_t>(raw.size() * sizeof(float)));
  return raw;
}

// Faster R-CNN's second stage: the proposals from stage one's outputs, the heads library run on them (stage one's
// `passes` and the proposals), its outputs decoded. The proposals are written as OUT_DIR/proposals.npy.
std::vector<Candidate> TwoStage(const Detection& d, const std::vector<ffi::Tensor>& outputs, int64_t image_h,
                                int64_t image_w, const Options& o, const std::vector<std::string>& sidecars,
                                DLDevice device) {
  Loaded heads = Load(d.heads_library, sidecars, o.threads, device.device_type);
  int arity = Method(heads.vm, "get_function_arity", "the heads' VM")("main").cast<int>();
  if (arity != static_cast<int>(d.passes.size()) + 1)
    Fail("the heads library takes " + std::to_string(arity) + " inputs, detection.txt passes " +
         std::to_string(d.passes.size()) + " and the proposals");
  std::vector<float> scores = HostFloats(outputs, d.scores, "the RPN's scores"),
                     deltas = HostFloats(outputs, d.deltas, "the RPN's offsets");
  int64_t real = 0, count = d.rois[d.rois.size() - 2];
  std::vector<float> rois = Proposals(d, scores, ShapeOf(outputs[d.scores]), deltas, ShapeOf(outputs[d.deltas]),
                                      image_h, image_w, count, &real);
  const std::vector<int64_t>& shape = d.rois;
  ffi::Tensor t = Global("runtime.TVMTensorAllocWithScope")(ffi::Shape(shape.begin(), shape.end()),
                                                            DLDataType{kDLFloat, 32, 1}, heads.device, ffi::Any())
                      .cast<ffi::Tensor>();
  Global("runtime.TVMTensorCopyFromBytes")(t, static_cast<void*>(rois.data()),
                                           static_cast<int64_t>(rois.size() * sizeof(float)));
  std::vector<ffi::AnyView> args;
  for (int i : d.passes) {
    if (i < 0 || i >= static_cast<int>(outputs.size())) Fail("detection.txt passes output " + std::to_string(i) +
                                                             ", which stage one lacks");
    args.emplace_back(outputs[i]);
  }
  args.emplace_back(t);
  ffi::Any result;
  try {
    Method(heads.vm, "main", "the heads' VM").CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
  } catch (const ffi::Error& e) {
    Fail("the heads failed: " + OneLine(e.kind() + ": " + e.message()));
  }
  std::vector<ffi::Tensor> second;
  Flatten(result, &second);
  if (!o.out_dir.empty()) {
    std::vector<char> bytes(rois.size() * sizeof(float));
    std::memcpy(bytes.data(), rois.data(), bytes.size());
    WriteNpy(o.out_dir + "/proposals.npy", *ByDL(DLDataType{kDLFloat, 32, 1}), {count, 4}, bytes);
  }
  std::printf("proposals: %lld of %lld\n", static_cast<long long>(real), static_cast<long long>(count));
  return DecodeRcnn(d, HostFloats(second, d.cls, "the class scores"), HostFloats(second, d.box, "the box offsets"),
                    rois, real, image_h, image_w);
}

int Run(const Options& o) {
  // inputs first: a missing or malformed file is said before the library is loaded
  std::vector<Npy> inputs;
  for (const std::string& path : o.inputs) inputs.push_back(ReadNpy(path));
  std::vector<std::string> sidecar_problems = LoadSidecars();
  Loaded model = Load(o.model, sidecar_problems, o.threads,
                      o.device.empty() ? kDLExtDev : o.device == "cuda" ? kDLCUDA : kDLCPU);
  const ffi::Module& vm = model.vm;
  const DLDevice device = model.device;
  const DLDeviceType device_type = device.device_type;

  int arity = Method(vm, "get_function_arity", "the model's VM")("main").cast<int>();
  ffi::Function param_name = Method(vm, "get_function_param_name", "the model's VM");
  if (arity != static_cast<int>(inputs.size())) {
    std::string names;
    for (int i = 0; i < arity; ++i) names += (i ? ", " : "") + param_name("main", i).cast<std::string>();
    Fail("the model takes " + std::to_string(arity) + (arity == 1 ? " input" : " inputs") + " (" + names + "), " +
         std::to_string(inputs.size()) + " .npy " + (inputs.size() == 1 ? "file was" : "files were") + " given");
  }
  ffi::Function alloc = Global("runtime.TVMTensorAllocWithScope");
  ffi::Function copy_in = Global("runtime.TVMTensorCopyFromBytes");
  ffi::Function copy_out = Global("runtime.TVMTensorCopyToBytes");
  std::vector<ffi::Tensor> tensors;
  std::vector<ffi::AnyView> args;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Npy& x = inputs[i];
    ffi::Tensor t =
        alloc(ffi::Shape(x.shape.begin(), x.shape.end()), x.type->dl, device, ffi::Any()).cast<ffi::Tensor>();
    copy_in(t, static_cast<void*>(const_cast<char*>(x.data.data())), static_cast<int64_t>(x.data.size()));
    tensors.push_back(t);
    std::printf("input %zu %s: %s %s (%s)\n", i, param_name("main", static_cast<int>(i)).cast<std::string>().c_str(),
                Dims(x.shape).c_str(), x.type->name, o.inputs[i].c_str());
  }
  for (const ffi::Tensor& t : tensors) args.emplace_back(t);

  ffi::Function main_fn = Method(vm, "main", "the model's VM");
  std::optional<ffi::Function> sync;
  if (device_type != kDLCPU) sync = Global("runtime.Device_StreamSync");
  auto run = [&]() {
    ffi::Any result;
    try {
      main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
      if (sync) (*sync)(device, static_cast<int64_t>(0));
    } catch (const ffi::Error& e) {
      std::string mismatch = InputMismatch(e.message(), o.inputs, inputs);
      Fail(mismatch.empty() ? "the model failed: " + OneLine(e.kind() + ": " + e.message()) : mismatch);
    }
    return result;
  };
  auto start = std::chrono::steady_clock::now();
  ffi::Any result = run();
  double first = Milliseconds(std::chrono::steady_clock::now() - start);
  std::vector<double> times;
  for (int i = 0; o.repeat > 1 && i < o.repeat; ++i) {
    start = std::chrono::steady_clock::now();
    result = run();
    times.push_back(Milliseconds(std::chrono::steady_clock::now() - start));
  }

  std::vector<ffi::Tensor> outputs;
  Flatten(result, &outputs);
  if (!o.out_dir.empty()) MakeDirs(o.out_dir);
  std::optional<Detection> detection = ReadDetection(o.model);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const ffi::Tensor& y = outputs[i];
    const DType* type = ByDL(y.dtype());
    std::vector<int64_t> shape(y.shape().begin(), y.shape().end());
    if (!type) Fail("output " + std::to_string(i) + " has a dtype that .npy cannot hold");
    std::string where = "not written: -o OUT_DIR writes it";
    if (!o.out_dir.empty()) {
      std::vector<char> data(ffi::GetDataSize(*y.GetDLTensorPtr()));
      copy_out(y, static_cast<void*>(data.data()), static_cast<int64_t>(data.size()));
      where = o.out_dir + "/out" + std::to_string(i) + ".npy";
      WriteNpy(where, *type, shape, data);
    }
    std::printf("output %zu: %s %s (%s)\n", i, Dims(shape).c_str(), type->name, where.c_str());
  }
  if (detection) {  // decoded on the host: each head's output copied out as float32
    std::vector<Candidate> found;
    const std::vector<int64_t>& image = inputs[0].shape;
    const int64_t image_h = image[image.size() - 2], image_w = image.back();
    if (detection->kind == "faster_rcnn") {
      found = TwoStage(*detection, outputs, image_h, image_w, o, sidecar_problems, device);
    } else {
      for (const Head& head : detection->heads)
        DecodeHead(*detection, head, HostFloats(outputs, head.output, "a head's").data(),
                   ShapeOf(outputs[head.output]), image_h, image_w, &found);
    }
    WriteDetections(Suppress(std::move(found), detection->iou, detection->max_boxes), o.out_dir,
                    detection->confidence);
  }
  if (times.empty()) {
    std::printf("time: %.3f ms (one run on %s; --repeat N for a median)\n", first,
                device_type == kDLCPU ? "cpu" : "cuda");
  } else {
    std::sort(times.begin(), times.end());
    double median = times.size() % 2 ? times[times.size() / 2]
                                     : (times[times.size() / 2 - 1] + times[times.size() / 2]) / 2;
    std::printf("time: %.3f ms (median of %zu runs on %s after a warm-up of %.3f ms; min %.3f ms)\n", median,
                times.size(), device_type == kDLCPU ? "cpu" : "cuda", first, times.front());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const Failure& f) {
    std::fprintf(stderr, "run_model: error: %s\n", f.message.c_str());
    return f.code;
  } catch (const ffi::Error& e) {
    std::fprintf(stderr, "run_model: error: %s\n", OneLine(e.kind() + ": " + e.message()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "run_model: error: %s\n", OneLine(e.what()).c_str());
    return 1;
  }
}
