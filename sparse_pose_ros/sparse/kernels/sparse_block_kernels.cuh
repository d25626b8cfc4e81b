// Device kernels of the sparse inverted-residual block (see sparse_block.h for the semantics).
//
// Index lists are built by a three-pass reduce-then-scan compaction (tile counts -> one-block
// scan of the tile counts -> ordered in-tile compaction) so that rows come out in raster order
// (neighbouring outputs read neighbouring rows) and no host round trip is needed. Every
// feature kernel is a grid-stride loop sized for the list capacity that reads the valid count
// from device memory and exits early.
#ifndef SPARSE_POSE_ROS_SPARSE_BLOCK_KERNELS_CUH
#define SPARSE_POSE_ROS_SPARSE_BLOCK_KERNELS_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace sparse_pose_ros
{
namespace kernels
{

constexpr int32_t kSCAN_THREADS = 256;
constexpr int32_t kSCAN_ITEMS = 4; // consecutive elements per thread
constexpr int32_t kSCAN_TILE = kSCAN_THREADS * kSCAN_ITEMS;
constexpr int32_t kGEMM_TILE = 16;
constexpr int32_t kLOOP_THREADS = 256;
constexpr float kMASK_ON = 0.5F; // G is 0/1; >= 0.5 matches the training-time hard threshold

__device__ __forceinline__ float toFloat(float v)
{
    return v;
}
__device__ __forceinline__ float toFloat(__half v)
{
    return __half2float(v);
}
template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

__device__ __forceinline__ float relu6(float v)
{
    return fminf(fmaxf(v, 0.0F), 6.0F);
}

//! Exclusive scan of one int per thread across the block; `total` receives the block sum.
//! Must be reached by every thread of the block.
__device__ __forceinline__ int32_t blockExclusiveScan(int32_t value, int32_t* total)
{
    constexpr int32_t kWARPS = kSCAN_THREADS / 32;
    __shared__ int32_t warpOffsets[kWARPS];
    __shared__ int32_t blockTotal;
    int32_t const lane = threadIdx.x & 31;
    int32_t const warp = threadIdx.x >> 5;
    int32_t inclusive = value;
#pragma unroll
    for (int32_t offset = 1; offset < 32; offset <<= 1)
    {
        int32_t const up = __shfl_up_sync(0xffffffffU, inclusive, offset);
        if (lane >= offset)
        {
            inclusive += up;
        }
    }
    if (lane == 31)
    {
        warpOffsets[warp] = inclusive;
    }
    __syncthreads();
    if (warp == 0)
    {
        int32_t const warpSum = lane < kWARPS ? warpOffsets[lane] : 0;
        int32_t warpInclusive = warpSum;
#pragma unroll
        for (int32_t offset = 1; offset < 32; offset <<= 1)
        {
            int32_t const up = __shfl_up_sync(0xffffffffU, warpInclusive, offset);
            if (lane >= offset)
            {
                warpInclusive += up;
            }
        }
        if (lane < kWARPS)
        {
            warpOffsets[lane] = warpInclusive - warpSum;
        }
        if (lane == kWARPS - 1)
        {
            blockTotal = warpInclusive;
        }
    }
    __syncthreads();
    int32_t const exclusive = warpOffsets[warp] + inclusive - value;
    *total = blockTotal;
    __syncthreads(); // the shared slots may be reused by the next call
    return exclusive;
}

//! Output position i (flat b*Ho*Wo + oy*Wo + ox) is active.
template <typename T>
struct ActiveFlag
{
    T const* mask;
    __device__ int32_t operator()(int32_t i) const
    {
        return toFloat(mask[i]) >= kMASK_ON ? 1 : 0;
    }
};

//! Input position p (flat b*H*W + y*W + x) is read by the depthwise 3x3 of an active output.
//! Output oy reads rows oy*s-1 .. oy*s+1, so row y is read by ceil((y-1)/s) <= oy <= floor((y+1)/s).
template <typename T>
struct DilatedFlag
{
    T const* mask;
    int32_t height;
    int32_t width;
    int32_t outHeight;
    int32_t outWidth;
    int32_t stride;
    int32_t padBefore; //!< output o reads inputs o*stride - padBefore .. + 2

    __device__ int32_t operator()(int32_t p) const
    {
        int32_t const plane = height * width;
        int32_t const b = p / plane;
        int32_t const s = p - b * plane;
        int32_t const y = s / width;
        int32_t const x = s - y * width;
        // outputs whose window covers (y, x): o*stride - padBefore <= v <= o*stride - padBefore + 2
        int32_t const oy0 = y + padBefore <= 2 ? 0 : (y + padBefore - 2 + stride - 1) / stride;
        int32_t const ox0 = x + padBefore <= 2 ? 0 : (x + padBefore - 2 + stride - 1) / stride;
        int32_t const oy1 = min(outHeight - 1, (y + padBefore) / stride);
        int32_t const ox1 = min(outWidth - 1, (x + padBefore) / stride);
        T const* outPlane = mask + static_cast<int64_t>(b) * outHeight * outWidth;
        for (int32_t oy = oy0; oy <= oy1; ++oy)
        {
            for (int32_t ox = ox0; ox <= ox1; ++ox)
            {
                if (toFloat(outPlane[oy * outWidth + ox]) >= kMASK_ON)
                {
                    return 1;
                }
            }
        }
        return 0;
    }
};

//! Pass 1: number of flagged elements per tile of kSCAN_TILE elements.
template <typename Flag>
__global__ void __launch_bounds__(kSCAN_THREADS) countTilesKernel(Flag flag, int32_t n, int32_t* tileSums)
{
    int32_t const base = blockIdx.x * kSCAN_TILE + threadIdx.x * kSCAN_ITEMS;
    int32_t count = 0;
#pragma unroll
    for (int32_t k = 0; k < kSCAN_ITEMS; ++k)
    {
        if (base + k < n)
        {
            count += flag(base + k);
        }
    }
    int32_t total = 0;
    blockExclusiveScan(count, &total);
    if (threadIdx.x == 0)
    {
        tileSums[blockIdx.x] = total;
    }
}

//! Pass 2 (one block): tile counts -> tile offsets in place; the grand total -> *count.
__global__ void __launch_bounds__(kSCAN_THREADS) scanTileSumsKernel(int32_t* tileSums, int32_t nTiles, int32_t* count)
{
    int32_t carry = 0;
    for (int32_t start = 0; start < nTiles; start += kSCAN_THREADS)
    {
        int32_t const i = start + static_cast<int32_t>(threadIdx.x);
        int32_t const value = i < nTiles ? tileSums[i] : 0;
        int32_t total = 0;
        int32_t const exclusive = blockExclusiveScan(value, &total);
        if (i < nTiles)
        {
            tileSums[i] = carry + exclusive;
        }
        carry += total;
    }
    if (threadIdx.x == 0)
    {
        *count = carry;
    }
}

//! Pass 3: ordered compaction. outIdx[k] = k-th flagged element; rowMap (optional) receives the
//! list position of every flagged element and -1 elsewhere, so later kernels can look up
//! neighbours in O(1).
template <typename Flag>
__global__ void __launch_bounds__(kSCAN_THREADS) compactTilesKernel(
    Flag flag, int32_t n, int32_t const* tileOffsets, int32_t* outIdx, int32_t* rowMap)
{
    int32_t const base = blockIdx.x * kSCAN_TILE + threadIdx.x * kSCAN_ITEMS;
    int32_t flags[kSCAN_ITEMS];
    int32_t count = 0;
#pragma unroll
    for (int32_t k = 0; k < kSCAN_ITEMS; ++k)
    {
        flags[k] = base + k < n ? flag(base + k) : 0;
        count += flags[k];
    }
    int32_t total = 0;
    int32_t position = tileOffsets[blockIdx.x] + blockExclusiveScan(count, &total);
#pragma unroll
    for (int32_t k = 0; k < kSCAN_ITEMS; ++k)
    {
        int32_t const i = base + k;
        if (i >= n)
        {
            break;
        }
        if (flags[k] != 0)
        {
            outIdx[position] = i;
            if (rowMap != nullptr)
            {
                rowMap[i] = position;
            }
            ++position;
        }
        else if (rowMap != nullptr)
        {
            rowMap[i] = -1;
        }
    }
}

//! rows[n, c] = X[b, c, y, x] for the n-th dilated position (b, y, x).
template <typename T>
__global__ void gatherRowsKernel(T const* x, int32_t const* dilatedIdx, int32_t const* count, int32_t channels,
    int32_t plane, float* rows)
{
    int64_t const total = static_cast<int64_t>(*count) * channels;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const n = i / channels;
        int32_t const c = static_cast<int32_t>(i - n * channels);
        int32_t const p = dilatedIdx[n];
        int32_t const b = p / plane;
        int32_t const s = p - b * plane;
        rows[i] = toFloat(x[(static_cast<int64_t>(b) * channels + c) * plane + s]);
    }
}

//! out[m, j] = act(sum_k a[m, k] * w[j, k] + bias[j]) for m < *count (1x1 conv on gathered rows,
//! BN folded into w/bias). Plain shared-memory tiling; row tiles past the count exit at once.
template <bool kRELU6>
__global__ void __launch_bounds__(kGEMM_TILE* kGEMM_TILE) rowsGemmKernel(float const* a, float const* w,
    float const* bias, int32_t const* count, int32_t depth, int32_t width, float* out)
{
    __shared__ float aTile[kGEMM_TILE][kGEMM_TILE + 1];
    __shared__ float wTile[kGEMM_TILE][kGEMM_TILE + 1];
    int32_t const rows = *count;
    int32_t const rowBase = blockIdx.x * kGEMM_TILE;
    if (rowBase >= rows)
    {
        return; // uniform for the whole block, so no __syncthreads is skipped by part of it
    }
    int32_t const ty = threadIdx.y;
    int32_t const tx = threadIdx.x;
    int32_t const row = rowBase + ty;
    int32_t const colBase = blockIdx.y * kGEMM_TILE;
    float acc = 0.0F;
    for (int32_t k0 = 0; k0 < depth; k0 += kGEMM_TILE)
    {
        int32_t const k = k0 + tx;
        aTile[ty][tx] = (row < rows && k < depth) ? a[static_cast<int64_t>(row) * depth + k] : 0.0F;
        int32_t const wRow = colBase + ty;
        wTile[ty][tx] = (wRow < width && k < depth) ? w[static_cast<int64_t>(wRow) * depth + k] : 0.0F;
        __syncthreads();
#pragma unroll
        for (int32_t kk = 0; kk < kGEMM_TILE; ++kk)
        {
            acc += aTile[ty][kk] * wTile[tx][kk];
        }
        __syncthreads();
    }
    int32_t const col = colBase + tx;
    if (row < rows && col < width)
    {
        float value = acc + bias[col];
        if (kRELU6)
        {
            value = relu6(value);
        }
        out[static_cast<int64_t>(row) * width + col] = value;
    }
}

//! out[m, c] = relu6(b_dw[c] + sum_taps w_dw[c, tap] * hidden[rowMap[neighbour], c]) at the m-th
//! active output. Out-of-image taps are the conv's zero padding; in-image taps are always in the
//! dilated list by construction (rowMap >= 0), the check only guards against a corrupt list.
__global__ void maskedDepthwiseKernel(float const* hidden, int32_t const* rowMap, int32_t const* activeIdx,
    int32_t const* count, float const* wDepthwise, float const* bDepthwise, int32_t channels, int32_t height,
    int32_t width, int32_t outHeight, int32_t outWidth, int32_t stride, int32_t padBefore, float* out)
{
    int64_t const total = static_cast<int64_t>(*count) * channels;
    int32_t const outPlane = outHeight * outWidth;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const m = i / channels;
        int32_t const c = static_cast<int32_t>(i - m * channels);
        int32_t const q = activeIdx[m];
        int32_t const b = q / outPlane;
        int32_t const s = q - b * outPlane;
        int32_t const oy = s / outWidth;
        int32_t const ox = s - oy * outWidth;
        float acc = bDepthwise[c];
#pragma unroll
        for (int32_t ky = 0; ky < 3; ++ky)
        {
            int32_t const iy = oy * stride - padBefore + ky;
            if (iy < 0 || iy >= height)
            {
                continue;
            }
#pragma unroll
            for (int32_t kx = 0; kx < 3; ++kx)
            {
                int32_t const ix = ox * stride - padBefore + kx;
                if (ix < 0 || ix >= width)
                {
                    continue;
                }
                int32_t const r = rowMap[(static_cast<int64_t>(b) * height + iy) * width + ix];
                if (r >= 0)
                {
                    acc += hidden[static_cast<int64_t>(r) * channels + c] * wDepthwise[c * 9 + ky * 3 + kx];
                }
            }
        }
        out[i] = relu6(acc);
    }
}

//! y[b, co, oy, ox] += rows[m, co] at the m-th active output. Positions are unique, so a plain
//! read-modify-write is race free (no atomics).
template <typename T>
__global__ void scatterAddKernel(
    float const* rows, int32_t const* activeIdx, int32_t const* count, int32_t channels, int32_t outPlane, T* y)
{
    int64_t const total = static_cast<int64_t>(*count) * channels;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const m = i / channels;
        int32_t const c = static_cast<int32_t>(i - m * channels);
        int32_t const q = activeIdx[m];
        int32_t const b = q / outPlane;
        int32_t const s = q - b * outPlane;
        int64_t const o = (static_cast<int64_t>(b) * channels + c) * outPlane + s;
        y[o] = fromFloat<T>(toFloat(y[o]) + rows[i]);
    }
}

} // namespace kernels
} // namespace sparse_pose_ros

#endif // SPARSE_POSE_ROS_SPARSE_BLOCK_KERNELS_CUH
