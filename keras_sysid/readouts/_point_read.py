"""Reading each neuron's features at one point of the grid, by gathering.

Private to :mod:`keras_sysid.readouts`: a readout that reads ``C`` features
at one (sub-cell) position per neuron calls :func:`point_read`.

A point read by bilinear interpolation touches four grid cells per neuron, so
its math is ``4 * C * N`` multiply-adds per image. Writing it as a dense
``(H * W, N)`` interpolation mask, as a mask readout does, costs
``H * W * C * N``; gathering the four corners of every neuron separately costs
the right FLOPs but writes a ``(4 * N, batch, C)`` tensor to memory and back,
which on a CPU is slower than the arithmetic. Here the neurons' corners are
sorted by grid cell and packed into blocks of ``block_size`` corners that share
one cell, so each block is one small matmul ``(block_size, C) @ (C, batch)``
against that cell's feature vectors: the feature maps are gathered once per
block, not once per corner, and every large step is a matmul.
"""

from __future__ import annotations

from keras import ops

# Timed on the readout alone (forward and backward, 5335 neurons on a 24x52x48
# grid, batch 64, 2 CPU cores): 8, 16 and 32 corners per block within 3%, 64 about
# 8% slower. 32 packs large populations into fewer blocks.
DEFAULT_BLOCK_SIZE = 32


def bilinear_corners(rows, columns, grid_shape):
    """Grid cells and bilinear weights of points on a grid.

    Args:
        rows: ``(N,)`` row of each point, in grid cells, within ``[0, H - 1]``.
        columns: ``(N,)`` column of each point, within ``[0, W - 1]``.
        grid_shape: ``(H, W)``.

    Returns:
        ``cells``: ``(N, 4)`` int32 flat indices ``row * W + column`` of the
        four neighbouring cells (top-left, top-right, bottom-left,
        bottom-right); ``weights``: ``(N, 4)`` in the dtype of ``rows``,
        summing to 1 per point. Both equal the non-zero entries of the
        triangle (bilinear) mask ``max(0, 1 - |h - row|) * max(0, 1 - |w - column|)``.
    """
    height, width = grid_shape
    top = ops.clip(ops.floor(rows), 0, max(height - 2, 0))
    left = ops.clip(ops.floor(columns), 0, max(width - 2, 0))
    down = rows - top  # in [0, 1]: the weight of the lower row
    right = columns - left
    top_index = ops.cast(top, "int32")
    left_index = ops.cast(left, "int32")
    # On a one-cell-high (or -wide) grid the second row (column) is the first,
    # with weight 0.
    bottom_index = ops.minimum(top_index + 1, height - 1)
    right_index = ops.minimum(left_index + 1, width - 1)
    cells = ops.stack(
        [
            top_index * width + left_index,
            top_index * width + right_index,
            bottom_index * width + left_index,
            bottom_index * width + right_index,
        ],
        axis=1,
    )
    weights = ops.stack(
        [(1.0 - down) * (1.0 - right), (1.0 - down) * right, down * (1.0 - right), down * right], axis=1
    )
    return cells, weights


def point_read(feature_maps, rows, columns, features, block_size: int = DEFAULT_BLOCK_SIZE):
    """``sum_c features[c, n] * bilinear(x[b, :, :, c], rows[n], columns[n])``.

    Differentiable in the feature maps, the points and the features; the
    same numbers as the dense read through :func:`triangle_mask` (to float
    rounding), in ``4 * C * N`` multiply-adds per image plus at most
    ``min(H * W, 4 * N) * block_size * C`` for partly filled blocks.

    Args:
        feature_maps: ``(batch, H, W, C)``.
        rows: ``(N,)`` float, within ``[0, H - 1]`` (clip before).
        columns: ``(N,)`` float, within ``[0, W - 1]``.
        features: ``(C, N)``.
        block_size: Corners per block (see the module docstring).

    Returns:
        ``(batch, N)`` in the dtype of ``feature_maps``.

    Memory: ``(4 N / block_size + min(H W, 4 N)) * (C * batch + block_size * (C + batch))``
    values, never ``4 N * C * batch`` or ``H W * N``.
    """
    height, width = feature_maps.shape[1:3]
    # Corners and weights in the positions' own precision (float32 weights
    # under a mixed policy), so a point is never rounded to a coarser grid.
    cells, weights = bilinear_corners(rows, columns, (height, width))
    layout = block_layout(ops.reshape(cells, (-1,)), height * width, block_size)
    return read_blocks(feature_maps, weights, features, layout)


def read_blocks(feature_maps, weights, features, layout):
    """The point read of :func:`point_read` through a given corner layout.

    The layout depends on the read points only, so a readout whose points are
    fixed (an exported, inference-only one) computes it once and reads through
    this; the sorts and searches that make the layout are then not part of the
    computation (some runtimes, OpenVINO's, cannot express them).

    Args:
        feature_maps: ``(batch, H, W, C)``.
        weights: ``(N, 4)`` bilinear weights of each point's four corners
            (:func:`bilinear_corners`).
        features: ``(C, N)``.
        layout: ``(slot_of_corner, corner_of_slot, block_cell)`` of
            :func:`block_layout` for the points' corner cells; ``n_blocks``
            is ``block_cell``'s length.

    Returns:
        ``(batch, N)`` in the dtype of ``feature_maps``.
    """
    slot_of_corner, corner_of_slot, block_cell = layout[:3]
    batch = ops.shape(feature_maps)[0]
    height, width, channels = feature_maps.shape[1:]
    n_cells = height * width
    n_neurons = features.shape[1]
    n_corners = 4 * n_neurons
    n_blocks = block_cell.shape[0]
    block_size = corner_of_slot.shape[0] // n_blocks

    # Each corner's weighted features; one zero row fills the unused slots.
    corner_features = ops.reshape(
        weights[:, :, None] * ops.transpose(ops.cast(features, weights.dtype))[:, None, :], (n_corners, channels)
    )
    corner_features = ops.cast(corner_features, feature_maps.dtype)
    corner_features = ops.concatenate([corner_features, ops.zeros((1, channels), corner_features.dtype)], axis=0)
    block_features = ops.reshape(ops.take(corner_features, corner_of_slot, axis=0), (n_blocks, block_size, channels))

    # (H * W, C, batch): one cell's feature vectors, for all images, contiguous.
    cell_maps = ops.transpose(ops.reshape(feature_maps, (batch, n_cells, channels)), (1, 2, 0))
    block_maps = ops.take(cell_maps, block_cell, axis=0)  # (n_blocks, C, batch)
    slot_drives = ops.reshape(ops.matmul(block_features, block_maps), (n_blocks * block_size, batch))
    corner_drives = ops.take(slot_drives, slot_of_corner, axis=0)  # (4 N, batch)
    return ops.transpose(ops.sum(ops.reshape(corner_drives, (n_neurons, 4, batch)), axis=1))


def block_layout(cells, n_cells: int, block_size: int):
    """Packs corners into blocks of ``block_size`` that share one grid cell.

    Args:
        cells: ``(J,)`` int32 grid cell of each corner.
        n_cells: ``H * W``.
        block_size: Slots per block.

    Returns:
        ``slot_of_corner`` ``(J,)``: where each corner sits in the flat
        ``(n_blocks * block_size)`` slot array; ``corner_of_slot``: the inverse,
        with ``J`` (a zero row) for empty slots; ``block_cell`` ``(n_blocks,)``:
        the cell each block reads; ``n_blocks``, a static bound
        ``ceil(J / block_size) + min(H * W, J)``: each occupied cell's last
        block may be part full, and at most ``J`` cells are occupied.
    """
    n_corners = cells.shape[0]
    n_blocks = -(-n_corners // block_size) + min(n_cells, n_corners)
    order = ops.cast(ops.argsort(cells), "int32")
    sorted_cells = ops.take(cells, order)
    cell_ids = ops.arange(n_cells, dtype="int32")
    first = ops.cast(ops.searchsorted(sorted_cells, cell_ids, side="left"), "int32")
    counts = ops.cast(ops.searchsorted(sorted_cells, cell_ids, side="right"), "int32") - first
    blocks_per_cell = (counts + block_size - 1) // block_size
    block_ends = ops.cast(ops.cumsum(blocks_per_cell), "int32")
    first_block = block_ends - blocks_per_cell
    rank = ops.arange(n_corners, dtype="int32") - ops.take(first, sorted_cells)  # rank within its cell
    # Strictly increasing: blocks follow the cells' order, slots the ranks. So both
    # maps below are gathers and searches, never scatters (Keras' PyTorch scatter
    # loops in Python).
    sorted_slots = (ops.take(first_block, sorted_cells) + rank // block_size) * block_size + rank % block_size
    slot_of_corner = ops.take(sorted_slots, ops.cast(ops.argsort(order), "int32"))
    slot_ids = ops.arange(n_blocks * block_size, dtype="int32")
    found = ops.minimum(ops.cast(ops.searchsorted(sorted_slots, slot_ids, side="left"), "int32"), n_corners - 1)
    corner_of_slot = ops.where(ops.take(sorted_slots, found) == slot_ids, ops.take(order, found), n_corners)
    block_ids = ops.arange(n_blocks, dtype="int32")
    block_cell = ops.minimum(ops.cast(ops.searchsorted(block_ends, block_ids, side="right"), "int32"), n_cells - 1)
    return slot_of_corner, corner_of_slot, block_cell, n_blocks
