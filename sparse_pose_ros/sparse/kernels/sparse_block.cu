// Launchers of the sparse inverted-residual block (API in sparse_block.h, kernels in
// sparse_block_kernels.cuh). Compiled unchanged into the torch CUDA extension and into the
// TensorRT plugin library.
#include "sparse_block.h"
#include "sparse_block_kernels.cuh"

#include <algorithm>

namespace sparse_pose_ros
{
namespace
{

constexpr size_t kALIGN = 256;
constexpr int64_t kMAX_POSITIONS = int64_t{1} << 30; // int32 flat indices with head room
constexpr int64_t kMAX_LOOP_BLOCKS = 4096;

size_t alignUp(size_t bytes)
{
    return (bytes + kALIGN - 1) / kALIGN * kALIGN;
}

int32_t tilesFor(int64_t n)
{
    return static_cast<int32_t>((n + kernels::kSCAN_TILE - 1) / kernels::kSCAN_TILE);
}

//! Byte offsets of every workspace buffer; one function so size and launch never disagree.
struct WorkspaceLayout
{
    size_t counts{0};
    size_t activeTiles{0};
    size_t dilatedTiles{0};
    size_t activeIdx{0};
    size_t dilatedIdx{0};
    size_t rowMap{0};
    size_t gathered{0};
    size_t hidden{0};
    size_t depthwise{0};
    size_t projected{0};
    size_t total{0};
};

struct Extents
{
    int64_t inPositions;
    int64_t outPositions;
    int32_t outHeight;
    int32_t outWidth;
};

Extents extentsOf(SparseBlockShape const& s)
{
    Extents e{};
    e.outHeight = sparseBlockOutExtent(s.inHeight, s.stride);
    e.outWidth = sparseBlockOutExtent(s.inWidth, s.stride);
    e.inPositions = int64_t{s.batch} * s.inHeight * s.inWidth;
    e.outPositions = int64_t{s.batch} * e.outHeight * e.outWidth;
    return e;
}

WorkspaceLayout layoutOf(SparseBlockShape const& s)
{
    Extents const e = extentsOf(s);
    WorkspaceLayout l{};
    size_t offset = 0;
    auto take = [&offset](size_t bytes) {
        size_t const at = offset;
        offset += alignUp(bytes);
        return at;
    };
    l.counts = take(2 * sizeof(int32_t));
    l.activeTiles = take(tilesFor(e.outPositions) * sizeof(int32_t));
    l.dilatedTiles = take(tilesFor(e.inPositions) * sizeof(int32_t));
    l.activeIdx = take(e.outPositions * sizeof(int32_t));
    l.dilatedIdx = take(e.inPositions * sizeof(int32_t));
    l.rowMap = take(e.inPositions * sizeof(int32_t));
    // Without an expand conv the gathered input rows *are* the hidden features.
    l.gathered = s.hasExpand ? take(e.inPositions * s.inChannels * sizeof(float)) : 0;
    l.hidden = take(e.inPositions * s.hiddenChannels * sizeof(float));
    l.depthwise = take(e.outPositions * s.hiddenChannels * sizeof(float));
    l.projected = take(e.outPositions * s.outChannels * sizeof(float));
    l.total = offset;
    return l;
}

unsigned int loopBlocks(int64_t work)
{
    int64_t const blocks = (work + kernels::kLOOP_THREADS - 1) / kernels::kLOOP_THREADS;
    return static_cast<unsigned int>(std::max<int64_t>(1, std::min(blocks, kMAX_LOOP_BLOCKS)));
}

template <typename T>
cudaError_t enqueueIndexLists(SparseBlockShape const& s, T const* mask, int32_t* activeIdx, int32_t* dilatedIdx,
    int32_t* rowMap, int32_t* counts, int32_t* activeTiles, int32_t* dilatedTiles, cudaStream_t stream)
{
    using namespace kernels;
    Extents const e = extentsOf(s);
    int32_t const nOut = static_cast<int32_t>(e.outPositions);
    int32_t const nIn = static_cast<int32_t>(e.inPositions);

    ActiveFlag<T> const active{mask};
    int32_t const outTiles = tilesFor(nOut);
    countTilesKernel<<<outTiles, kSCAN_THREADS, 0, stream>>>(active, nOut, activeTiles);
    scanTileSumsKernel<<<1, kSCAN_THREADS, 0, stream>>>(activeTiles, outTiles, counts);
    compactTilesKernel<<<outTiles, kSCAN_THREADS, 0, stream>>>(active, nOut, activeTiles, activeIdx, nullptr);

    DilatedFlag<T> const dilated{
        mask, s.inHeight, s.inWidth, e.outHeight, e.outWidth, s.stride, s.padBefore};
    int32_t const inTiles = tilesFor(nIn);
    countTilesKernel<<<inTiles, kSCAN_THREADS, 0, stream>>>(dilated, nIn, dilatedTiles);
    scanTileSumsKernel<<<1, kSCAN_THREADS, 0, stream>>>(dilatedTiles, inTiles, counts + 1);
    compactTilesKernel<<<inTiles, kSCAN_THREADS, 0, stream>>>(dilated, nIn, dilatedTiles, dilatedIdx, rowMap);
    return cudaGetLastError();
}

template <typename T>
cudaError_t enqueueBlock(SparseBlockShape const& s, SparseBlockTensors const& t, char* ws, WorkspaceLayout const& l,
    cudaStream_t stream)
{
    using namespace kernels;
    Extents const e = extentsOf(s);
    auto* counts = reinterpret_cast<int32_t*>(ws + l.counts);
    int32_t const* activeCount = counts;
    int32_t const* dilatedCount = counts + 1;
    auto* activeIdx = reinterpret_cast<int32_t*>(ws + l.activeIdx);
    auto* dilatedIdx = reinterpret_cast<int32_t*>(ws + l.dilatedIdx);
    auto* rowMap = reinterpret_cast<int32_t*>(ws + l.rowMap);
    auto* hidden = reinterpret_cast<float*>(ws + l.hidden);
    auto* depthwise = reinterpret_cast<float*>(ws + l.depthwise);
    auto* projected = reinterpret_cast<float*>(ws + l.projected);
    auto const* x = static_cast<T const*>(t.x);
    auto* y = static_cast<T*>(t.y);

    cudaError_t status = enqueueIndexLists<T>(s, static_cast<T const*>(t.mask), activeIdx, dilatedIdx, rowMap, counts,
        reinterpret_cast<int32_t*>(ws + l.activeTiles), reinterpret_cast<int32_t*>(ws + l.dilatedTiles), stream);
    if (status != cudaSuccess)
    {
        return status;
    }

    // Inactive outputs keep X (residual) or are zero: initialise the whole output once.
    size_t const outBytes = static_cast<size_t>(e.outPositions) * s.outChannels * sizeof(T);
    status = s.residual ? cudaMemcpyAsync(y, x, outBytes, cudaMemcpyDeviceToDevice, stream)
                        : cudaMemsetAsync(y, 0, outBytes, stream);
    if (status != cudaSuccess)
    {
        return status;
    }

    int32_t const plane = s.inHeight * s.inWidth;
    float* rows = s.hasExpand ? reinterpret_cast<float*>(ws + l.gathered) : hidden;
    gatherRowsKernel<T><<<loopBlocks(e.inPositions * s.inChannels), kLOOP_THREADS, 0, stream>>>(
        x, dilatedIdx, dilatedCount, s.inChannels, plane, rows);

    dim3 const gemmThreads(kGEMM_TILE, kGEMM_TILE);
    if (s.hasExpand)
    {
        dim3 const grid(static_cast<unsigned int>((e.inPositions + kGEMM_TILE - 1) / kGEMM_TILE),
            static_cast<unsigned int>((s.hiddenChannels + kGEMM_TILE - 1) / kGEMM_TILE));
        rowsGemmKernel<true><<<grid, gemmThreads, 0, stream>>>(
            rows, t.wExpand, t.bExpand, dilatedCount, s.inChannels, s.hiddenChannels, hidden);
    }

    maskedDepthwiseKernel<<<loopBlocks(e.outPositions * s.hiddenChannels), kLOOP_THREADS, 0, stream>>>(hidden,
        rowMap, activeIdx, activeCount, t.wDepthwise, t.bDepthwise, s.hiddenChannels, s.inHeight, s.inWidth,
        e.outHeight, e.outWidth, s.stride, s.padBefore, depthwise);

    dim3 const projectGrid(static_cast<unsigned int>((e.outPositions + kGEMM_TILE - 1) / kGEMM_TILE),
        static_cast<unsigned int>((s.outChannels + kGEMM_TILE - 1) / kGEMM_TILE));
    rowsGemmKernel<false><<<projectGrid, gemmThreads, 0, stream>>>(
        depthwise, t.wProject, t.bProject, activeCount, s.hiddenChannels, s.outChannels, projected);

    scatterAddKernel<T><<<loopBlocks(e.outPositions * s.outChannels), kLOOP_THREADS, 0, stream>>>(
        projected, activeIdx, activeCount, s.outChannels, e.outHeight * e.outWidth, y);
    return cudaGetLastError();
}

} // namespace

char const* sparseBlockShapeError(SparseBlockShape const& s)
{
    if (s.batch <= 0 || s.inChannels <= 0 || s.hiddenChannels <= 0 || s.outChannels <= 0)
    {
        return "batch and channel counts must be positive";
    }
    if (s.inHeight <= 0 || s.inWidth <= 0)
    {
        return "input height and width must be positive";
    }
    if (s.stride != 1 && s.stride != 2)
    {
        return "stride must be 1 or 2";
    }
    if (s.stride == 1 ? s.padBefore != 1 : (s.padBefore != 0 && s.padBefore != 1))
    {
        return "pad before must be 1 at stride 1 and 0 or 1 at stride 2";
    }
    if (!s.hasExpand && s.hiddenChannels != s.inChannels)
    {
        return "without an expand conv the hidden width must equal the input channels";
    }
    if (s.residual && (s.stride != 1 || s.outChannels != s.inChannels))
    {
        return "a residual block needs stride 1 and equal input/output channels";
    }
    if (int64_t{s.batch} * s.inHeight * s.inWidth >= kMAX_POSITIONS)
    {
        return "batch * height * width exceeds the 2^30 positions the int32 index lists support";
    }
    return nullptr;
}

size_t sparseBlockWorkspaceSize(SparseBlockShape const& shape)
{
    return sparseBlockShapeError(shape) == nullptr ? layoutOf(shape).total : 0;
}

size_t sparseIndexScratchSize(SparseBlockShape const& shape)
{
    if (sparseBlockShapeError(shape) != nullptr)
    {
        return 0;
    }
    Extents const e = extentsOf(shape);
    return alignUp(tilesFor(e.outPositions) * sizeof(int32_t)) + alignUp(tilesFor(e.inPositions) * sizeof(int32_t));
}

cudaError_t launchSparseIndexLists(SparseBlockShape const& shape, SparseDType dtype, void const* mask,
    int32_t* activeIdx, int32_t* dilatedIdx, int32_t* rowMap, int32_t* counts, void* scratch, size_t scratchBytes,
    cudaStream_t stream)
{
    if (sparseBlockShapeError(shape) != nullptr || scratchBytes < sparseIndexScratchSize(shape) || mask == nullptr
        || activeIdx == nullptr || dilatedIdx == nullptr || rowMap == nullptr || counts == nullptr
        || scratch == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    Extents const e = extentsOf(shape);
    auto* activeTiles = static_cast<int32_t*>(scratch);
    auto* dilatedTiles = reinterpret_cast<int32_t*>(
        static_cast<char*>(scratch) + alignUp(tilesFor(e.outPositions) * sizeof(int32_t)));
    if (dtype == SparseDType::kFLOAT16)
    {
        return enqueueIndexLists<__half>(shape, static_cast<__half const*>(mask), activeIdx, dilatedIdx, rowMap, counts,
            activeTiles, dilatedTiles, stream);
    }
    return enqueueIndexLists<float>(shape, static_cast<float const*>(mask), activeIdx, dilatedIdx, rowMap, counts,
        activeTiles, dilatedTiles, stream);
}

cudaError_t launchSparseInvertedResidual(SparseBlockShape const& shape, SparseDType dtype,
    SparseBlockTensors const& tensors, void* workspace, size_t workspaceBytes, cudaStream_t stream)
{
    if (sparseBlockShapeError(shape) != nullptr || workspace == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    WorkspaceLayout const layout = layoutOf(shape);
    if (workspaceBytes < layout.total)
    {
        return cudaErrorInvalidValue;
    }
    bool const weightsMissing = tensors.wDepthwise == nullptr || tensors.bDepthwise == nullptr
        || tensors.wProject == nullptr || tensors.bProject == nullptr
        || (shape.hasExpand && (tensors.wExpand == nullptr || tensors.bExpand == nullptr));
    if (tensors.x == nullptr || tensors.mask == nullptr || tensors.y == nullptr || weightsMissing)
    {
        return cudaErrorInvalidValue;
    }
    char* ws = static_cast<char*>(workspace);
    if (dtype == SparseDType::kFLOAT16)
    {
        return enqueueBlock<__half>(shape, tensors, ws, layout, stream);
    }
    return enqueueBlock<float>(shape, tensors, ws, layout, stream);
}

} // namespace sparse_pose_ros
